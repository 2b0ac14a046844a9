"""Delivery semantics: OIDC tokens, retries, deadlines, rate and concurrency caps,
queue-level http_target."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import google.auth.transport.requests
import pytest
import requests
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.oauth2 import id_token

from contract.names import (
    GOOGLE_ISSUER,
    HEADER_EXECUTION_COUNT,
    HEADER_PREVIOUS_RESPONSE,
    HEADER_RETRY_COUNT,
)
from emulator.testing import EmulatorProcess

pytestmark = pytest.mark.integration
FULL = tasks_v2.Task.View.FULL
INVOKER = "invoker@emu-test.iam.gserviceaccount.com"
SLOW_PARENT = "projects/emu-slow/locations/us-central1"


@dataclass
class Scenario:
    task: str
    started: float


@pytest.fixture(scope="module", autouse=True)
def slow_scenarios(client: Any, module_target: Any) -> dict[str, Scenario]:
    """Start the scenarios that need seconds of wall time once, at module start;
    the tests at the end of this module check them, so the waits overlap."""
    configs: dict[str, tuple[dict[str, Any], str, dict[str, Any]]] = {
        # 1 s, 2 s (one doubling), then capped at 2 s; abandoned after 4 attempts.
        "spacing": (
            {"max_attempts": 4, "min_backoff": "1s", "max_backoff": "2s", "max_doublings": 1},
            "/status/500",
            {},
        ),
        "both_limits": (
            {
                "max_attempts": 2,
                "max_retry_duration": "3s",
                "min_backoff": "1s",
                "max_backoff": "1s",
            },
            "/status/500",
            {},
        ),
        "duration_only": (
            {
                "max_attempts": -1,
                "max_retry_duration": "2s",
                "min_backoff": "1s",
                "max_backoff": "1s",
            },
            "/status/500",
            {},
        ),
        "deadline": (
            {"min_backoff": "30s", "max_backoff": "30s"},
            "/sleep/40",
            {"dispatch_deadline": "15s"},
        ),
    }
    scenarios = {}
    for key, (retry, path, extra) in configs.items():
        queue = f"{SLOW_PARENT}/queues/{key.replace('_', '-')}-{time.time_ns() % 10**9}"
        client.create_queue(parent=SLOW_PARENT, queue={"name": queue, "retry_config": retry})
        task = client.create_task(
            parent=queue, task={"http_request": {"url": module_target.url(path)}, **extra}
        )
        scenarios[key] = Scenario(task=task.name, started=time.time())
    return scenarios


def _wait_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def _bearer(delivery: Any) -> str:
    scheme, _, token = delivery.headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    return token


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
    header = google.auth.jwt.decode_header(token)
    assert header["alg"] == "RS256"
    jwks = requests.get(emu.jwks_url, timeout=5).json()
    assert [k["kid"] for k in jwks["keys"]] == [header["kid"]]
    assert set(requests.get(emu.certs_url, timeout=5).json()) == {header["kid"]}
    discovery = requests.get(f"{emu.http_url}/.well-known/openid-configuration", timeout=5).json()
    assert discovery["issuer"] == GOOGLE_ISSUER
    assert discovery["jwks_uri"] == emu.jwks_url


def test_execution_count_counts_non_5xx_responses(
    client: Any, make_queue: Any, target: Any
) -> None:
    queue = make_queue(retry_config={"max_attempts": 2, "min_backoff": "1s", "max_backoff": "1s"})
    task = client.create_task(
        parent=queue, task={"http_request": {"url": target.url("/status/404")}}
    )
    first, second = target.wait_for(2, task.name, timeout=5)
    assert first.headers[HEADER_EXECUTION_COUNT] == "0"
    assert second.headers[HEADER_EXECUTION_COUNT] == "1"
    assert second.headers[HEADER_PREVIOUS_RESPONSE] == "404"


def test_task_succeeding_after_failures_is_deleted(
    client: Any, make_queue: Any, target: Any
) -> None:
    queue = make_queue(retry_config={"min_backoff": "1s", "max_backoff": "1s"})
    task = client.create_task(parent=queue, task={"http_request": {"url": target.url("/flaky/1")}})
    assert len(target.wait_for(2, task.name, timeout=5)) == 2
    time.sleep(1.5)
    assert len(target.for_task(task.name)) == 2


def test_retry_after_on_429_is_honoured(client: Any, make_queue: Any, target: Any) -> None:
    queue = make_queue(retry_config={"max_attempts": 2, "min_backoff": "1s", "max_backoff": "1s"})
    task = client.create_task(
        parent=queue, task={"http_request": {"url": target.url("/status/429")}}
    )
    first, second = target.wait_for(2, task.name, timeout=5)
    assert second.at - first.at >= 1.95  # the target says Retry-After: 2


def test_unreachable_target_is_retried_with_unavailable(
    client: Any, make_queue: Any, emu: EmulatorProcess
) -> None:
    queue = make_queue(retry_config={"min_backoff": "1s", "max_backoff": "1s"})
    # Port 9 (discard) is not listening on loopback in the test environment.
    task = client.create_task(parent=queue, task={"http_request": {"url": "http://127.0.0.1:9/x"}})
    time.sleep(0.5)
    full = client.get_task(request={"name": task.name, "response_view": FULL})
    assert full.dispatch_count == 1
    assert full.response_count == 0
    assert full.last_attempt.response_status.code == 14  # UNAVAILABLE


def test_rate_limit_and_burst_are_held(client: Any, make_queue: Any, target: Any) -> None:
    queue = make_queue(rate_limits={"max_dispatches_per_second": 5})
    client.pause_queue(name=queue)
    for _ in range(15):
        client.create_task(parent=queue, task={"http_request": {"url": target.url()}})
    start = time.time()
    client.resume_queue(name=queue)
    deliveries = target.wait_for(15, timeout=10)
    times = sorted(d.at - start for d in deliveries)
    assert len(times) == 15
    # The bucket holds 5 tokens: 5 at once, then one every 0.2 s.
    assert times[4] < 0.5
    assert 1.8 <= times[-1] <= 2.6, times


def test_max_concurrent_dispatches_is_held(client: Any, make_queue: Any, target: Any) -> None:
    queue = make_queue(rate_limits={"max_concurrent_dispatches": 2})
    for _ in range(6):
        client.create_task(parent=queue, task={"http_request": {"url": target.url("/sleep/0.3")}})
    assert len(target.wait_for(6, timeout=5)) == 6
    assert target.max_active == 2


def test_queue_uri_override_always_rewrites_host_port_and_path(
    client: Any, make_queue: Any, target: Any
) -> None:
    port = int(target.base_url.rsplit(":", 1)[1])
    queue = make_queue(
        http_target={
            "uri_override": {
                "scheme": "HTTP",
                "host": "127.0.0.1",
                "port": port,
                "path_override": {"path": "/overridden"},
            },
            "header_overrides": [{"header": {"key": "X-Queue", "value": "q"}}],
            "oidc_token": {"service_account_email": INVOKER, "audience": "https://aud"},
        }
    )
    task = client.create_task(
        parent=queue, task={"http_request": {"url": "https://unreachable.invalid/mine"}}
    )
    [d] = target.wait_for(1, task.name)
    assert d.path == "/overridden"
    assert d.headers["X-Queue"] == "q"
    claims = google.auth.jwt.decode(_bearer(d), verify=False)
    assert claims["aud"] == "https://aud"
    assert claims["email"] == INVOKER


def test_queue_uri_override_if_not_exists_keeps_task_parts(
    client: Any, make_queue: Any, target: Any
) -> None:
    queue = make_queue(
        http_target={
            "uri_override": {
                "path_override": {"path": "/default-path"},
                "uri_override_enforce_mode": "IF_NOT_EXISTS",
            }
        }
    )
    mine = client.create_task(parent=queue, task={"http_request": {"url": target.url("/mine")}})
    bare = client.create_task(parent=queue, task={"http_request": {"url": target.base_url}})
    assert target.wait_for(1, mine.name)[0].path == "/mine"
    assert target.wait_for(1, bare.name)[0].path == "/default-path"


def test_failed_attempt_is_visible_in_the_full_view(
    client: Any, make_queue: Any, target: Any
) -> None:
    queue = make_queue(retry_config={"min_backoff": "60s", "max_backoff": "60s"})
    task = client.create_task(
        parent=queue, task={"http_request": {"url": target.url("/status/500")}}
    )
    target.wait_for(1, task.name)
    time.sleep(0.2)
    full = client.get_task(request={"name": task.name, "response_view": FULL})
    assert full.dispatch_count == 1
    assert full.response_count == 1
    assert full.first_attempt.dispatch_time.timestamp() > 0
    assert (
        full.last_attempt.response_time.timestamp() >= full.last_attempt.dispatch_time.timestamp()
    )
    assert full.last_attempt.response_status.code == 13  # INTERNAL for an HTTP 500
    assert full.schedule_time.timestamp() > time.time() + 50  # next retry in 60 s


def test_huge_response_body_does_not_hurt_the_emulator(
    client: Any, queue_name: str, target: Any, emu: EmulatorProcess
) -> None:
    task = client.create_task(
        parent=queue_name, task={"http_request": {"url": target.url("/big/5000000")}}
    )
    target.wait_for(1, task.name)
    time.sleep(0.3)
    with pytest.raises(exceptions.NotFound):  # a 200 is a success, whatever the body
        client.get_task(name=task.name)
    assert emu.health()["status"] == "ok"


def test_garbage_response_is_a_failed_attempt_and_the_queue_goes_on(
    client: Any, make_queue: Any, target: Any
) -> None:
    with socket.socket() as garbage:
        garbage.bind(("127.0.0.1", 0))
        garbage.listen(8)
        port = garbage.getsockname()[1]

        def answer_garbage() -> None:
            conn, _ = garbage.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")

        thread = threading.Thread(target=answer_garbage, daemon=True)
        thread.start()
        queue = make_queue(
            rate_limits={"max_concurrent_dispatches": 1},
            retry_config={"min_backoff": "60s", "max_backoff": "60s"},
        )
        bad = client.create_task(
            parent=queue, task={"http_request": {"url": f"http://127.0.0.1:{port}/x"}}
        )
        good = client.create_task(parent=queue, task={"http_request": {"url": target.url()}})
        assert len(target.wait_for(1, good.name, timeout=5)) == 1
        thread.join(timeout=5)
    full = client.get_task(request={"name": bad.name, "response_view": FULL})
    assert full.dispatch_count == 1
    assert full.last_attempt.response_status.code == 14  # UNAVAILABLE


# -- checks of the background scenarios (kept last: they wait for wall time) ----------


def test_retries_follow_the_retry_config_then_give_up(
    client: Any, module_target: Any, slow_scenarios: dict[str, Scenario]
) -> None:
    scenario = slow_scenarios["spacing"]
    _wait_until(scenario.started + 7.5)
    deliveries = module_target.for_task(scenario.task)
    assert len(deliveries) == 4
    gaps = [b.at - a.at for a, b in itertools.pairwise(deliveries)]
    for gap, expected in zip(gaps, [1, 2, 2], strict=True):
        assert expected - 0.05 <= gap <= expected + 0.6, gaps
    assert [d.headers[HEADER_RETRY_COUNT] for d in deliveries] == ["0", "1", "2", "3"]
    assert HEADER_PREVIOUS_RESPONSE not in deliveries[0].headers
    assert deliveries[1].headers[HEADER_PREVIOUS_RESPONSE] == "500"
    # 5xx responses do not count as executions.
    assert {d.headers[HEADER_EXECUTION_COUNT] for d in deliveries} == {"0"}
    with pytest.raises(exceptions.NotFound):
        client.get_task(name=scenario.task)


def test_both_limits_must_be_reached_before_giving_up(
    client: Any, module_target: Any, slow_scenarios: dict[str, Scenario]
) -> None:
    scenario = slow_scenarios["both_limits"]
    _wait_until(scenario.started + 5)
    # Attempts at 0, 1, 2, 3 s: max_attempts (2) alone would have stopped after 2,
    # max_retry_duration (3 s) is reached at the fourth.
    assert len(module_target.for_task(scenario.task)) == 4
    with pytest.raises(exceptions.NotFound):
        client.get_task(name=scenario.task)


def test_unlimited_attempts_stop_at_max_retry_duration(
    module_target: Any, slow_scenarios: dict[str, Scenario]
) -> None:
    scenario = slow_scenarios["duration_only"]
    _wait_until(scenario.started + 4)
    assert len(module_target.for_task(scenario.task)) == 3  # at 0, 1 and 2 s


def test_dispatch_deadline_aborts_the_attempt(
    client: Any, slow_scenarios: dict[str, Scenario]
) -> None:
    scenario = slow_scenarios["deadline"]
    _wait_until(scenario.started + 15.8)
    full = client.get_task(request={"name": scenario.task, "response_view": FULL})
    assert full.dispatch_count == 1
    assert full.response_count == 0
    assert full.last_attempt.response_status.code == 4  # DEADLINE_EXCEEDED
    assert full.schedule_time.timestamp() > time.time() + 20  # retry scheduled 30 s later
