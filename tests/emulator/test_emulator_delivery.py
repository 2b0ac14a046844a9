"""Real delivery: OIDC tokens verified as a worker would, and HTTP over real sockets.

Retry, rate, deadline and override semantics run in-process on a fake clock
(test_emulator_semantics.py); these tests need a real process or real HTTP.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import google.auth.jwt
import google.auth.transport.requests
import pytest
import requests
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.oauth2 import id_token

from contract.names import GOOGLE_ISSUER
from emulator.delivery import HttpDeliverer, OutboundRequest, Unreachable
from emulator.testing import EmulatorProcess
from tests.emulator.support import Target, eventually

pytestmark = pytest.mark.integration
FULL = tasks_v2.Task.View.FULL
INVOKER = "invoker@emu-test.iam.gserviceaccount.com"


def _bearer(delivery: Any) -> str:
    scheme, _, token = str(delivery.headers["Authorization"]).partition(" ")
    assert scheme == "Bearer"
    return token


@contextlib.contextmanager
def _garbage_server() -> Iterator[tuple[int, threading.Thread]]:
    """A loopback socket that answers one connection with bytes that are not HTTP."""
    with socket.socket() as garbage:
        garbage.bind(("127.0.0.1", 0))
        garbage.listen(8)

        def answer_garbage() -> None:
            conn, _ = garbage.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")

        thread = threading.Thread(target=answer_garbage, daemon=True)
        thread.start()
        yield garbage.getsockname()[1], thread
        thread.join(timeout=5)


def test_oidc_token_verifies_with_google_auth_and_defaults_audience_to_url(
    client: Any, queue_name: str, target: Any, emu: EmulatorProcess
) -> None:
    url = target.url("/tasks/secure?q=1")
    task = client.create_task(
        parent=queue_name,
        task={"http_request": {"url": url, "oidc_token": {"service_account_email": INVOKER}}},
    )
    [d] = target.wait_for(1, task.name)
    claims = id_token.verify_token(
        _bearer(d),
        google.auth.transport.requests.Request(),
        audience=url,
        certs_url=emu.certs_url,
    )
    assert claims["iss"] == GOOGLE_ISSUER
    assert claims["email"] == INVOKER
    assert claims["email_verified"] is True
    assert claims["sub"].isdigit()
    assert claims["exp"] - claims["iat"] == 3600


def test_oidc_token_has_explicit_audience_and_kid_from_jwks(
    client: Any, queue_name: str, target: Any, emu: EmulatorProcess
) -> None:
    audience = "https://worker-123.us-central1.run.app"
    task = client.create_task(
        parent=queue_name,
        task={
            "http_request": {
                "url": target.url(),
                "oidc_token": {"service_account_email": INVOKER, "audience": audience},
            }
        },
    )
    [d] = target.wait_for(1, task.name)
    token = _bearer(d)
    request = google.auth.transport.requests.Request()
    claims = id_token.verify_token(token, request, audience=audience, certs_url=emu.certs_url)
    assert claims["aud"] == audience
    with pytest.raises(ValueError, match="audience"):
        id_token.verify_token(token, request, audience="https://other", certs_url=emu.certs_url)
    header = google.auth.jwt.decode_header(token)  # type: ignore[no-untyped-call]
    assert header["alg"] == "RS256"
    jwks = requests.get(emu.jwks_url, timeout=5).json()
    assert [k["kid"] for k in jwks["keys"]] == [header["kid"]]
    assert set(requests.get(emu.certs_url, timeout=5).json()) == {header["kid"]}
    discovery = requests.get(f"{emu.http_url}/.well-known/openid-configuration", timeout=5).json()
    assert discovery["issuer"] == GOOGLE_ISSUER
    assert discovery["jwks_uri"] == emu.jwks_url


def test_huge_response_body_does_not_hurt_the_emulator(
    client: Any, queue_name: str, target: Any, emu: EmulatorProcess
) -> None:
    task = client.create_task(
        parent=queue_name, task={"http_request": {"url": target.url("/big/5000000")}}
    )
    target.wait_for(1, task.name)

    def gone() -> bool:
        try:
            client.get_task(name=task.name)
        except exceptions.NotFound:
            return True
        return False

    assert eventually(gone), "a 200 with a huge body is a success, whatever the body"
    assert emu.health()["status"] == "ok"


def test_garbage_response_is_a_failed_attempt_and_the_queue_goes_on(
    client: Any, make_queue: Any, target: Any
) -> None:
    with _garbage_server() as (port, _):
        queue = make_queue(
            rate_limits={"max_concurrent_dispatches": 1},
            retry_config={"min_backoff": "60s", "max_backoff": "60s"},
        )
        bad = client.create_task(
            parent=queue, task={"http_request": {"url": f"http://127.0.0.1:{port}/x"}}
        )
        good = client.create_task(parent=queue, task={"http_request": {"url": target.url()}})
        assert len(target.wait_for(1, good.name, timeout=5)) == 1
    full = client.get_task(request={"name": bad.name, "response_view": FULL})
    assert full.dispatch_count == 1
    assert full.last_attempt.response_status.code == 14  # UNAVAILABLE


# -- the real deliverer in-process, against real sockets ------------------------------


async def test_http_deliverer_reports_status_and_headers_case_insensitively(
    target: Target,
) -> None:
    deliverer = HttpDeliverer()
    await deliverer.start()
    try:
        request = OutboundRequest("PUT", target.url("/status/429"), {"X-A": "1"}, b"body")
        result = await deliverer.deliver(request)
    finally:
        await deliverer.close()
    assert result.status == 429
    assert result.headers.get("retry-after") == "2"  # the retry decision reads it
    [d] = target.deliveries
    assert (d.method, d.body, d.headers["X-A"]) == ("PUT", b"body", "1")
    assert "Content-Type" not in d.headers  # Cloud Tasks sets no default Content-Type


async def test_http_deliverer_raises_unreachable_for_a_garbage_answer() -> None:
    deliverer = HttpDeliverer()
    await deliverer.start()
    try:
        with _garbage_server() as (port, _):
            request = OutboundRequest("POST", f"http://127.0.0.1:{port}/x", {}, b"")
            with pytest.raises(Unreachable, match="Could not reach"):
                await deliverer.deliver(request)
    finally:
        await deliverer.close()
