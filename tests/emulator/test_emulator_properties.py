"""Property test: random names, sizes and fields never crash or stall the emulator.

Hypothesis throws CreateQueue/CreateTask requests with arbitrary ids, URLs,
headers, bodies, methods, deadlines and retry settings at the gRPC API and
arbitrary JSON at the REST API. Every answer must be a success or a client
error Google would also give (INVALID_ARGUMENT, ALREADY_EXISTS, NOT_FOUND),
never INTERNAL or a dropped connection; afterwards every queue still delivers.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import pytest
import requests
from google.api_core import exceptions
from hypothesis import HealthCheck, given, settings, strategies as st

from emulator.testing import EmulatorProcess

pytestmark = pytest.mark.integration
PARENT = "projects/prop/locations/l"
CLIENT_ERRORS = (exceptions.InvalidArgument, exceptions.AlreadyExists, exceptions.NotFound)

ids = st.one_of(
    st.from_regex(r"[A-Za-z0-9-]{1,12}", fullmatch=True),
    st.text(min_size=0, max_size=30),
    st.text(alphabet="ab-_/.:", min_size=0, max_size=520),
)
durations = st.one_of(
    st.none(),
    st.builds(lambda s: f"{s}s", st.integers(min_value=-5, max_value=4000)),
)
queues = st.fixed_dictionaries(
    {
        "id": ids,
        "rate": st.one_of(
            st.just(0.0), st.just(float("nan")), st.floats(min_value=-1, max_value=600)
        ),
        "concurrency": st.integers(min_value=-2, max_value=6000),
        "attempts": st.integers(min_value=-3, max_value=5),
        "min_backoff": durations,
        "max_backoff": durations,
    }
)
tasks = st.fixed_dictionaries(
    {
        "id": st.one_of(st.none(), ids),
        "path": st.text(max_size=40),
        "method": st.integers(min_value=0, max_value=9),
        "headers": st.dictionaries(st.text(max_size=12), st.text(max_size=30), max_size=4),
        "body_size": st.sampled_from([0, 1, 100, 100_001, 1_048_600]),
        "deadline": durations,
        "delay": st.one_of(
            st.integers(min_value=-100, max_value=40 * 86400),
            st.sampled_from([-(10**13), 10**13]),
        ),
        "status": st.sampled_from(["/ok", "/status/500", "/status/404"]),
    }
)


def _queue_request(q: dict[str, Any]) -> dict[str, Any]:
    retry: dict[str, Any] = {"max_attempts": q["attempts"]}
    for key in ("min_backoff", "max_backoff"):
        if q[key] is not None:
            retry[key] = q[key]
    return {
        "name": f"{PARENT}/queues/{q['id']}",
        "rate_limits": {
            "max_dispatches_per_second": q["rate"],
            "max_concurrent_dispatches": q["concurrency"],
        },
        "retry_config": retry,
    }


@pytest.fixture(scope="module")
def prop_emu() -> Any:
    with EmulatorProcess() as emu:
        yield emu


def _send(emu: EmulatorProcess, target: Any, queue: dict[str, Any], batch: list[Any]) -> None:
    client = emu.client()
    name = f"{PARENT}/queues/{queue['id']}"
    try:
        client.create_queue(parent=PARENT, queue=_queue_request(queue))
    except CLIENT_ERRORS:
        name = f"{PARENT}/queues/fallback"
        with contextlib.suppress(exceptions.AlreadyExists):
            client.create_queue(parent=PARENT, queue={"name": name})
    for t in batch:
        request: dict[str, Any] = {
            "http_request": {
                "url": target.url("/") + t["status"].lstrip("/") + t["path"],
                "http_method": t["method"],
                "headers": t["headers"],
                "body": b"x" * t["body_size"],
            }
        }
        if t["id"] is not None:
            request["name"] = f"{name}/tasks/{t['id']}"
        if t["deadline"] is not None:
            request["dispatch_deadline"] = t["deadline"]
        request["schedule_time"] = {"seconds": int(time.time()) + t["delay"]}
        with contextlib.suppress(*CLIENT_ERRORS):
            client.create_task(parent=name, task=request)
    assert emu.health()["status"] == "ok"


def test_random_requests_never_break_the_server_and_every_queue_still_dispatches(
    target: Any,
) -> None:
    # One emulator for the barrage and the check after it, in one test: the check
    # must see the barrage's queues whichever worker runs which test.
    with EmulatorProcess() as emu:

        @settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(queue=queues, batch=st.lists(tasks, min_size=1, max_size=4))
        def barrage(queue: dict[str, Any], batch: list[dict[str, Any]]) -> None:
            _send(emu, target, queue, batch)

        barrage()
        _every_queue_still_dispatches(emu, target)


@settings(max_examples=30, deadline=None)
@given(
    body=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(
                st.sampled_from(["name", "task", "httpRequest", "url", "rateLimits", "body", "x"]),
                children,
                max_size=3,
            )
        ),
        max_leaves=8,
    ),
    path=st.sampled_from(["/queues", "/queues/fallback/tasks", "/queues/fallback:purge"]),
)
def test_random_rest_json_gets_a_client_error_or_success(
    prop_emu: EmulatorProcess, body: Any, path: str
) -> None:
    resp = requests.post(
        f"{prop_emu.http_url}/v2/{PARENT}{path}",
        data=json.dumps(body),
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert resp.status_code in (200, 400, 404, 409), resp.text
    if resp.status_code != 200:
        assert resp.json()["error"]["status"] in ("INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS")


def _every_queue_still_dispatches(emu: EmulatorProcess, target: Any) -> None:
    client = emu.client()
    client.create_queue(parent=PARENT, queue={"name": f"{PARENT}/queues/sentinel"})
    names = [q.name for q in client.list_queues(parent=PARENT)]
    assert len(names) >= 2
    created = []
    for name in names:
        # Whatever was accepted must also render as REST JSON.
        listed = requests.get(
            f"{emu.http_url}/v2/{name}/tasks", params={"responseView": "FULL"}, timeout=10
        )
        assert listed.status_code == 200, listed.text
        client.purge_queue(name=name)
        client.resume_queue(name=name)
        created.append(
            client.create_task(parent=name, task={"http_request": {"url": target.url()}})
        )
    for task in created:
        assert len(target.wait_for(1, task.name, timeout=5)) == 1, task.name
