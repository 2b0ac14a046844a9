"""``--manual-clock``: time under the test's control, through the admin endpoints.

A real emulator process on a manual clock delivers to a real HTTP target:
schedule times, backoffs, dispatch deadlines and tombstones follow
``POST /emulator/v1/clock:advance``, retries an hour apart run in one call,
``POST /emulator/v1/QUEUE:runDue`` starts every due task at once, and ID tokens
keep the real time (the worker checks them against its own clock).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import requests
from google.api_core import exceptions
from google.cloud import tasks_v2

from contract.names import HEADER_ETA, HEADER_RETRY_COUNT
from emulator.testing import EmulatorProcess
from tests.emulator.conftest import PARENT, unique
from tests.emulator.support import Target, eventually

pytestmark = pytest.mark.integration

FULL = tasks_v2.Task.View.FULL


@pytest.fixture(scope="module")
def manual() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(extra_args=("--manual-clock",)) as process:
        yield process


@pytest.fixture
def queue_of(manual: EmulatorProcess) -> Iterator[Any]:
    client = manual.client()
    made: list[str] = []

    def make(**fields: Any) -> str:
        name = f"{PARENT}/queues/{unique('mc')}"
        client.create_queue(parent=PARENT, queue={"name": name, **fields})
        made.append(name)
        return name

    yield make
    for name in made:
        with contextlib.suppress(exceptions.NotFound):
            client.delete_queue(name=name)


def _clock(emu: EmulatorProcess) -> dict[str, Any]:
    resp = requests.get(f"{emu.http_url}/emulator/v1/clock", timeout=5)
    resp.raise_for_status()
    result: dict[str, Any] = resp.json()
    return result


def test_time_stands_still_and_a_scheduled_task_waits_for_advance(
    manual: EmulatorProcess, queue_of: Any, target: Target
) -> None:
    first = _clock(manual)
    time.sleep(0.2)
    assert _clock(manual) == first
    assert first["manual"] is True
    assert manual.health()["manual_clock"] is True
    client = manual.client()
    eta = int(first["now"]) + 3600
    task = client.create_task(
        parent=queue_of(),
        task={"http_request": {"url": target.url()}, "schedule_time": {"seconds": eta}},
    )
    manual.advance(3599 - (first["now"] - int(first["now"])))
    assert target.wait_for(1, task.name, timeout=0.5) == []
    assert manual.advance(1) >= eta
    [d] = target.wait_for(1, task.name)
    assert float(d.headers[HEADER_ETA]) == eta


def test_retries_an_hour_apart_run_in_one_advance(
    manual: EmulatorProcess, queue_of: Any, target: Target
) -> None:
    queue = queue_of(
        retry_config={"max_attempts": 4, "min_backoff": "600s", "max_backoff": "3600s"}
    )
    task = manual.client().create_task(
        parent=queue, task={"http_request": {"url": target.url("/status/500")}}
    )
    assert len(target.wait_for(1, task.name)) == 1
    started = time.monotonic()
    manual.advance(2 * 3600)
    elapsed = time.monotonic() - started
    sent = target.for_task(task.name)
    assert [d.headers[HEADER_RETRY_COUNT] for d in sent] == ["0", "1", "2", "3"]
    etas = [float(d.headers[HEADER_ETA]) for d in sent]
    assert [round(b - a) for a, b in itertools.pairwise(etas)] == [600, 1200, 2400]
    assert elapsed < 10  # 70 minutes of backoff, in real seconds
    assert manual.dropped(queue)["queues"] == {queue: 1}


def test_dispatch_deadline_follows_the_manual_clock(
    manual: EmulatorProcess, queue_of: Any, target: Target
) -> None:
    client = manual.client()
    queue = queue_of(
        retry_config={"max_attempts": 2, "min_backoff": "3600s", "max_backoff": "3600s"}
    )
    # A worker slower than the 15 s deadline in real time is no failure: no time passed.
    slow = client.create_task(
        parent=queue,
        task={"http_request": {"url": target.url("/sleep/0.5")}, "dispatch_deadline": "15s"},
    )
    assert eventually(lambda: not _exists(client, slow.name), timeout=10)
    # Advancing past the deadline while it is in flight fails the attempt.
    stuck = client.create_task(
        parent=queue,
        task={"http_request": {"url": target.url("/sleep/3")}, "dispatch_deadline": "15s"},
    )
    assert len(target.wait_for(1, stuck.name)) == 1
    manual.advance(16, wait_seconds=0)
    got = client.get_task(request={"name": stuck.name, "response_view": FULL})
    assert got.last_attempt.response_status.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]


def _exists(client: Any, name: str) -> bool:
    try:
        client.get_task(name=name)
    except exceptions.NotFound:
        return False
    return True


def test_run_due_starts_every_due_task_of_a_paused_queue(
    manual: EmulatorProcess, queue_of: Any, target: Target
) -> None:
    client = manual.client()
    queue = queue_of()
    client.pause_queue(name=queue)
    due = [
        client.create_task(parent=queue, task={"http_request": {"url": target.url()}})
        for _ in range(3)
    ]
    later = client.create_task(
        parent=queue,
        task={
            "http_request": {"url": target.url()},
            "schedule_time": {"seconds": int(_clock(manual)["now"]) + 60},
        },
    )
    assert manual.run_due(queue) == 3
    for task in due:
        assert len(target.wait_for(1, task.name)) == 1
    assert target.for_task(later.name) == []
    assert _exists(client, later.name)


def test_tombstones_expire_with_the_manual_clock(
    manual: EmulatorProcess, queue_of: Any, target: Target
) -> None:
    client = manual.client()
    queue = queue_of()
    name = f"{queue}/tasks/once"
    client.create_task(parent=queue, task={"name": name, "http_request": {"url": target.url()}})
    target.wait_for(1, name)
    assert eventually(lambda: not _exists(client, name))
    with pytest.raises(exceptions.AlreadyExists):
        client.create_task(parent=queue, task={"name": name, "http_request": {"url": target.url()}})
    manual.advance(3601)  # the default tombstone window is an hour
    client.create_task(parent=queue, task={"name": name, "http_request": {"url": target.url()}})
    assert len(target.wait_for(2, name)) == 2


def test_id_tokens_keep_the_real_time(
    manual: EmulatorProcess, queue_of: Any, target: Target
) -> None:
    started = time.monotonic()
    manual.advance(7 * 24 * 3600)
    assert time.monotonic() - started < 5  # a week of idle timers, stepped through quickly
    task = manual.client().create_task(
        parent=queue_of(),
        task={
            "http_request": {
                "url": target.url(),
                "oidc_token": {"service_account_email": "invoker@p.iam.gserviceaccount.com"},
            }
        },
    )
    [d] = target.wait_for(1, task.name)
    payload = d.headers["Authorization"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert abs(claims["iat"] - time.time()) < 60


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "expected a JSON object"),
        ({"seconds": -1}, "cannot be negative"),
        ({"seconds": "soon"}, "cannot read"),
        ({"seconds": 1, "by": 2}, "Unknown field 'by'"),
        ({"seconds": 400_000_000}, "at most"),
    ],
)
def test_bad_advance_is_400_with_what_to_send(
    manual: EmulatorProcess, body: dict[str, Any], needle: str
) -> None:
    resp = requests.post(f"{manual.http_url}/emulator/v1/clock:advance", json=body, timeout=5)
    assert resp.status_code == 400
    assert needle in resp.json()["error"]["message"]


def test_run_due_of_a_missing_queue_is_404(manual: EmulatorProcess) -> None:
    resp = requests.post(f"{manual.http_url}/emulator/v1/{PARENT}/queues/nope:runDue", timeout=5)
    assert resp.status_code == 404
    bad = requests.post(f"{manual.http_url}/emulator/v1/nonsense:runDue", timeout=5)
    assert bad.status_code == 400


def test_the_real_clock_refuses_to_advance(emu: EmulatorProcess) -> None:
    assert _clock(emu)["manual"] is False
    resp = requests.post(
        f"{emu.http_url}/emulator/v1/clock:advance", json={"seconds": 1}, timeout=5
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["status"] == "FAILED_PRECONDITION"
    assert "--manual-clock" in resp.json()["error"]["message"]
