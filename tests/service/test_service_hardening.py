"""What an adversarial review of the worker asked for: it fails closed, refuses
oversized or slow requests early, and keeps token material out of its log.

Settings that must stop the worker are in test_service_units.py (`TestSettings`);
here are the behaviours of a running worker, in-process where HTTP framing does
not matter and as a real `python -m service` process where it does (header size
and read timeouts live in the HTTP server, below the app).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

import httpx
import pytest

from emulator.oidc import OidcIssuer
from service.app import create_app
from service.auth import CLOCK_SKEW_S
from service.config import ConfigError, Settings
from service.http_limits import MAX_HEADER_BYTES
from tests.service.asgi import AppServer, capture_logs
from tests.service.conftest import Worker, new_id
from tests.service.support import LocalIssuer

SECRET: Final = "TOKEN-MATERIAL-c0ffee"
ISSUER_HOLDER: list[LocalIssuer] = []


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _not_utf8() -> str:
    return _b64(b"\xff" + SECRET.encode())


def test_disabling_the_check_on_purpose_logs_a_loud_warning(tmp_path: Path) -> None:
    settings = Settings.from_env({"TASKS_AUTH_DISABLED": "true"})
    with capture_logs() as logs, AppServer(create_app(settings)):
        entry = logs.wait_for_log(lambda e: "TASKS_AUTH_DISABLED" in e["message"])
    assert entry["severity"] == "WARNING"
    assert entry["message"].startswith("TOKEN CHECK DISABLED")
    assert entry["host"] == "0.0.0.0"


def test_without_the_check_the_log_says_loopback_only(tmp_path: Path) -> None:
    settings = Settings.from_env({"HOST": "127.0.0.1"})
    with capture_logs() as logs, AppServer(create_app(settings)):
        entry = logs.wait_for_log(lambda e: "token check off" in e["message"])
    assert entry["severity"] == "WARNING"
    assert "serving 127.0.0.1 only" in entry["message"]


# --- the token check (in-process, really signed tokens) -----------------------------


def _refusal(worker: Worker, token: str, *, headers: Mapping[str, str] | None = None) -> str:
    """POST with `token`, assert 401 and no run, return the logged reason."""
    name = new_id()
    pairs = [
        ("Content-Type", "application/json"),
        ("X-CloudTasks-TaskName", name),
        ("Authorization", f"Bearer {token}"),
        *(headers or {}).items(),  # appended, not merged: keeps a second Authorization
    ]
    all_headers = httpx.Headers(pairs)
    response = worker.request(
        "POST", "/tasks/record", content=json.dumps({"id": name}).encode(), headers=all_headers
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert worker.runs(name) == [], "the handler ran for a rejected request"
    entry = worker.wait_for_log(lambda e: e.get("task_name") == name)
    assert entry["outcome"] == "unauthenticated"
    reason: str = entry["reason"]
    return reason


class TestTokenCheck:
    def test_two_authorization_headers_are_refused(self, worker: Worker) -> None:
        # Both tokens valid: which one counts must not depend on the parser's order.
        assert worker.issuer is not None
        other = worker.issuer.token(extra={"nonce": new_id()})
        reason = _refusal(
            worker, worker.issuer.token(), headers={"Authorization": f"Bearer {other}"}
        )
        assert reason == "more than one Authorization header"

    def test_a_token_not_yet_valid_is_refused(self, worker: Worker) -> None:
        assert worker.issuer is not None
        token = worker.issuer.token(extra={"nbf": int(time.time()) + 120})
        assert "token not valid before" in _refusal(worker, token)

    def test_nbf_gets_the_same_clock_skew_as_iat(self, worker: Worker) -> None:
        assert worker.issuer is not None
        for nbf_in in (-60, 0, CLOCK_SKEW_S - 3):
            token = worker.issuer.token(extra={"nbf": int(time.time()) + nbf_in})
            assert worker.post("record", {"id": new_id()}, token=token).status_code == 200

    def test_a_non_numeric_nbf_is_refused(self, worker: Worker) -> None:
        assert worker.issuer is not None
        token = worker.issuer.token(extra={"nbf": "soon"})
        assert _refusal(worker, token) == "token nbf claim is not a number"

    @pytest.mark.parametrize("alg", [["RS256"], {"RS256": 1}, None, 256])
    def test_an_algorithm_of_any_json_type_is_a_clean_401(
        self, worker: Worker, alg: object
    ) -> None:
        assert worker.issuer is not None
        token = worker.issuer.token()
        forged = f"{_b64(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{token.split('.', 1)[1]}"
        assert (
            _refusal(worker, forged) == "token algorithm an unknown one not accepted (RS256 only)"
        )
        assert not worker.entries(lambda e: "stack_trace" in e or e.get("severity") == "ERROR")

    @pytest.mark.parametrize(
        "make",
        [
            # The payload is not JSON: google-auth quotes its decoded bytes.
            lambda t: f"{t.split('.')[0]}.{_b64(SECRET.encode())}.{t.split('.')[2]}",
            # A JSON payload that is not an object: google-auth quotes the segment.
            lambda t: f"{t.split('.')[0]}.{_b64(json.dumps([SECRET]).encode())}.sig",
            # Wrong number of segments: google-auth quotes the whole token.
            lambda t: f"{_b64(SECRET.encode())}.{t}",
            # A valid signature over the wrong audience: google-auth quotes `aud`.
            lambda _t: ISSUER_HOLDER[0].token(audience=SECRET),
            # A forged key id: google-auth quotes `kid` from the header.
            lambda _t: OidcIssuer(kid=SECRET).sign({"iat": 1, "exp": 2}),
            # An unknown algorithm named by the caller.
            lambda t: f"{_b64(json.dumps({'alg': SECRET}).encode())}.{t.split('.', 1)[1]}",
            # A payload that is not UTF-8 after base64.
            lambda t: f"{t.split('.')[0]}.{_not_utf8()}.{t.split('.')[2]}",
        ],
    )
    def test_no_token_material_reaches_the_log(
        self, worker: Worker, make: Callable[[str], str]
    ) -> None:
        assert worker.issuer is not None
        ISSUER_HOLDER[:] = [worker.issuer]
        token = make(worker.issuer.token(extra={"note": SECRET}))
        reason = _refusal(worker, token)
        assert SECRET not in reason
        assert _b64(SECRET.encode())[:12] not in reason
        for line in worker.entries(lambda e: True):
            assert SECRET not in json.dumps(line), line


# --- the header size limit at the ASGI level (any server) ---------------------------


def test_an_oversized_header_section_is_431_whatever_the_server(tmp_path: Path) -> None:
    """`uvicorn service.app:create_app --factory` has no transport limit: the app refuses."""
    settings = Settings.from_env({"HOST": "127.0.0.1"})
    pads = {f"X-Pad-{i}": "p" * 1000 for i in range(MAX_HEADER_BYTES // 1000 + 1)}
    with capture_logs() as logs, AppServer(create_app(settings)) as server:
        response = server.request("POST", "/tasks/smoke", content=b"{}", headers=pads)
        assert response.status_code == 431
        assert server.request("GET", "/healthz", headers=pads).status_code == 431
        small = {k: v for k, v in list(pads.items())[:8]}
        assert (
            server.request("POST", "/tasks/smoke", content=b"{}", headers=small).status_code == 200
        )
    assert logs.entries(lambda e: "header section of" in e["message"])
    assert not logs.entries(lambda e: e.get("task_type") == "smoke" and e.get("status") == 431)


@pytest.mark.parametrize("name", ["TASKS_HEADER_TIMEOUT_S", "TASKS_BODY_TIMEOUT_S"])
def test_read_timeouts_must_be_positive(name: str) -> None:
    with pytest.raises(ConfigError, match=f"{name}='0': a timeout must be above 0"):
        Settings.from_env({"HOST": "127.0.0.1", name: "0"})
    settings = Settings.from_env({"HOST": "127.0.0.1", name: "2.5"})
    assert 2.5 in (settings.header_timeout_s, settings.body_timeout_s)


# --- the local stack's worker environment is one the worker accepts -----------------


@pytest.mark.parametrize(
    ("iam_invokers", "planned", "checked"),
    [
        # Public invoke (allUsers / invokerIamDisabled) and no allow-list of the program's.
        (None, {}, False),
        (None, {"TASKS_AUDIENCE": "https://w.a.run.app"}, False),
        # The program's env (components/worker.py) behind a run.invoker binding.
        (
            ("inv@p.iam.gserviceaccount.com",),
            {
                "TASKS_AUDIENCE": "https://w.a.run.app",
                "TASKS_ALLOWED_INVOKERS": "inv@p.iam.gserviceaccount.com",
            },
            True,
        ),
    ],
)
def test_the_local_stacks_worker_env_starts_the_worker(
    iam_invokers: tuple[str, ...] | None, planned: dict[str, str], checked: bool
) -> None:
    from devstack.local_worker import WorkerSpec

    spec = WorkerSpec("worker", ["python", "-m", "service"], planned, iam_invokers, "/healthz", "p")
    env = spec.process_env(host="127.0.0.1", port=0, certs_url="http://127.0.0.1:1/certs")
    settings = Settings.from_env(env)
    assert settings.auth_enabled is checked
    assert not settings.auth_disabled
