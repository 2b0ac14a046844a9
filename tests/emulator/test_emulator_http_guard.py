"""The HTTP port refuses what a web page could send: foreign Host (DNS rebinding),
foreign Origin (CSRF) and non-JSON bodies (CORS "simple" requests,
https://fetch.spec.whatwg.org/#cors-safelisted-request-header).

In-process over ASGI (httpx.ASGITransport) against the real app of
emulator.rest_api; one subprocess test checks ``--host 0.0.0.0``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import requests
from google.cloud import tasks_v2

from emulator.rest_api import build_app
from emulator.testing import EmulatorProcess
from tests.emulator.inproc import PARENT, Harness

QUEUE = f"{PARENT}/queues/guarded"
BODY = b'{"name": "%s"}' % QUEUE.encode()


async def _request(
    h: Harness,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    allowed: tuple[str, ...] = (),
    base: str = "http://127.0.0.1:8124",
) -> httpx.Response:
    transport = httpx.ASGITransport(app=build_app(h.emulator, allowed))
    async with httpx.AsyncClient(transport=transport, base_url=base) as client:
        return await client.request(method, path, headers=headers, content=body)


def _refused(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert (error["code"], error["status"]) == (status, code)
    assert error["message"]


# Cross-site writes: what a page can POST without a CORS preflight.
@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain"},
        {"Content-Type": "text/plain;charset=UTF-8"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "multipart/form-data; boundary=x"},
        {},  # no Content-Type at all
        {"Content-Type": "application/jsonx"},
    ],
    ids=repr,
)
async def test_a_body_that_is_not_json_is_refused_and_changes_nothing(
    core: Harness, headers: dict[str, str]
) -> None:
    resp = await _request(core, "POST", f"/v2/{PARENT}/queues", headers=headers, body=BODY)
    _refused(resp, 415, "INVALID_ARGUMENT")
    assert "application/json" in resp.json()["error"]["message"]
    assert QUEUE not in core.emulator.queues


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://evil.example:8124",
        "null",
        "http://127.0.0.1.evil.example",
        "file://",
        "http://localhost.evil.example",
        "garbage",
    ],
)
async def test_a_foreign_origin_is_refused_even_with_json(core: Harness, origin: str) -> None:
    headers = {"Content-Type": "application/json", "Origin": origin}
    resp = await _request(core, "POST", f"/v2/{PARENT}/queues", headers=headers, body=BODY)
    _refused(resp, 403, "PERMISSION_DENIED")
    assert QUEUE not in core.emulator.queues
    # Reads too (a rebound page reading tasks, the health endpoint).
    for path in (f"/v2/{PARENT}/queues", "/emulator/v1/health"):
        _refused(
            await _request(core, "GET", path, headers={"Origin": origin}),
            403,
            "PERMISSION_DENIED",
        )


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8124",
        "127.0.0.1.nip.io:8124",
        "10.0.0.5:8124",
        "localhost.evil.example",
        "user@127.0.0.1:8124",
        "127.0.0.1:notaport",
        "",
    ],
)
async def test_a_foreign_host_is_refused_dns_rebinding(core: Harness, host: str) -> None:
    for method, path, headers, body in (
        ("GET", f"/v2/{PARENT}/queues", {}, b""),
        ("GET", "/emulator/v1/health", {}, b""),
        ("POST", "/emulator/v1/tombstones:reset", {}, b""),
        ("GET", "/emulator/v1/dropped", {}, b""),
        ("POST", "/emulator/v1/dropped:reset", {}, b""),
        ("POST", f"/v2/{PARENT}/queues", {"Content-Type": "application/json"}, BODY),
    ):
        resp = await _request(core, method, path, headers={**headers, "Host": host}, body=body)
        _refused(resp, 403, "PERMISSION_DENIED")
    assert QUEUE not in core.emulator.queues


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8124", "localhost:8124", "[::1]:8124", "127.0.0.1", "LOCALHOST"]
)
async def test_loopback_hosts_and_origins_and_json_are_served(core: Harness, host: str) -> None:
    headers = {
        "Host": host,
        "Content-Type": "application/json; charset=utf-8",
        "Origin": f"http://{host}",
    }
    resp = await _request(core, "POST", f"/v2/{PARENT}/queues", headers=headers, body=BODY)
    assert resp.status_code == 200, resp.text
    # No body, no Content-Type needed (pause, the admin endpoint, GETs).
    paused = await _request(core, "POST", f"/v2/{QUEUE}:pause", headers={"Host": host})
    assert paused.json()["state"] == "PAUSED"
    assert (await _request(core, "GET", "/emulator/v1/health")).status_code == 200


@pytest.mark.parametrize(
    "origin", ["http://127.0.0.1:3000", "http://localhost:8124", "https://127.0.0.1:8124"]
)
async def test_a_page_on_another_loopback_origin_cannot_act(core: Harness, origin: str) -> None:
    """A page on another local port (a dev server) is another origin: its no-cors POSTs,
    which need no preflight, must not pause, purge, run or buffer anything."""
    host = {"Host": "127.0.0.1:8124"}
    created = await _request(
        core,
        "POST",
        f"/v2/{PARENT}/queues",
        headers={**host, "Content-Type": "application/json"},
        body=BODY,
    )
    assert created.status_code == 200, created.text
    for path, headers, body in (
        (f"/v2/{QUEUE}:pause", {}, b""),
        (f"/v2/{QUEUE}:purge", {}, b""),
        ("/emulator/v1/tombstones:reset", {}, b""),
        (f"/v2/{QUEUE}/tasks:buffer", {"Content-Type": "text/plain"}, b"hello"),
    ):
        resp = await _request(
            core, "POST", path, headers={**host, **headers, "Origin": origin}, body=body
        )
        _refused(resp, 403, "PERMISSION_DENIED")
        assert "only its own pages, origin http://127.0.0.1:8124" in resp.json()["error"]["message"]
    assert core.emulator.queues[QUEUE].pb.state == tasks_v2.Queue.State.RUNNING


async def test_an_allowed_host_is_served_only_when_named(core: Harness) -> None:
    headers = {"Host": "emulator:8124"}
    refused = await _request(core, "GET", f"/v2/{PARENT}/queues", headers=headers)
    _refused(refused, 403, "PERMISSION_DENIED")
    allowed = await _request(
        core, "GET", f"/v2/{PARENT}/queues", headers=headers, allowed=("emulator",)
    )
    assert allowed.status_code == 200, allowed.text


async def test_duplicated_guard_headers_are_refused(core: Harness) -> None:
    transport = httpx.ASGITransport(app=build_app(core.emulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:1") as client:
        request = client.build_request("GET", f"/v2/{PARENT}/queues")
        request.headers = httpx.Headers([("Host", "127.0.0.1"), ("Host", "evil.example")])
        resp = await client.send(request)
    _refused(resp, 403, "PERMISSION_DENIED")


@pytest.mark.integration
def test_a_non_loopback_host_warns_and_still_refuses_foreign_hosts() -> None:
    with EmulatorProcess(extra_args=("--host", "0.0.0.0")) as emu:
        assert "WARNING: --host 0.0.0.0 is not loopback" in emu.log_text()
        assert "sign ID tokens for any service account" in emu.log_text()
        local = f"http://127.0.0.1:{emu.http_port}"
        assert requests.get(f"{local}/emulator/v1/health", timeout=5).status_code == 200
        # The ready line's own URL (Host: 0.0.0.0:PORT) is served too.
        assert requests.get(f"{emu.http_url}/emulator/v1/health", timeout=5).status_code == 200
        foreign = requests.get(
            f"{local}/emulator/v1/health", headers={"Host": "evil.example"}, timeout=5
        )
        assert foreign.status_code == 403
        assert foreign.json()["error"]["status"] == "PERMISSION_DENIED"


def test_loopback_default_host_does_not_warn(emu: EmulatorProcess, rest_client: Any) -> None:
    assert "WARNING" not in emu.log_text()
    # The official REST client (Host 127.0.0.1:PORT, application/json) still works.
    assert list(rest_client.list_queues(parent="projects/guard/locations/l")) == []
