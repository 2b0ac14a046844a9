"""The precision Google documents for task and queue times, through the official client.

task.proto and queue.proto: ``create_time`` is truncated to the second;
``schedule_time``, the attempts' ``schedule_time``/``dispatch_time``/``response_time``
and the queue's ``purge_time`` to the microsecond; ``dispatch_deadline`` to the
millisecond. Checked on the raw protobufs the client decodes, over gRPC and
REST (where they travel as RFC 3339 strings and ``"20.123s"`` durations).
"""

from __future__ import annotations

import time
from typing import Any, Literal

import pytest
from google.cloud import tasks_v2

from emulator.testing import EmulatorProcess
from tests.emulator.support import Target, eventually

pytestmark = pytest.mark.integration

FULL = tasks_v2.Task.View.FULL


def _raw(task: Any) -> Any:
    return tasks_v2.Task.pb(task)


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_caller_times_are_truncated_as_google_documents(
    transport: Literal["grpc", "rest"], emu: EmulatorProcess, make_queue: Any, target: Target
) -> None:
    client = emu.client(transport)
    queue = make_queue()
    eta = int(time.time()) + 3600
    task = client.create_task(
        request={
            "parent": queue,
            "task": {
                "http_request": {"url": target.url()},
                "schedule_time": {"seconds": eta, "nanos": 123_456_789},
                "dispatch_deadline": {"seconds": 20, "nanos": 123_456_789},
            },
        }
    )
    for got in (_raw(task), _raw(client.get_task(name=task.name))):
        assert (got.schedule_time.seconds, got.schedule_time.nanos) == (eta, 123_456_000)
        assert (got.dispatch_deadline.seconds, got.dispatch_deadline.nanos) == (20, 123_000_000)
        assert got.create_time.nanos == 0
        assert got.create_time.seconds <= int(time.time())


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_emulator_times_are_whole_microseconds(
    transport: Literal["grpc", "rest"], emu: EmulatorProcess, make_queue: Any, target: Target
) -> None:
    client = emu.client(transport)
    queue = make_queue(retry_config={"min_backoff": "600s", "max_backoff": "600s"})
    failing = client.create_task(
        parent=queue, task={"http_request": {"url": target.url("/status/500")}}
    )
    created = _raw(failing)
    assert created.create_time.nanos == 0
    assert created.schedule_time.nanos % 1_000 == 0
    assert created.dispatch_deadline.seconds == 600

    def full() -> Any:
        return _raw(client.get_task(request={"name": failing.name, "response_view": FULL}))

    assert eventually(lambda: full().last_attempt.HasField("response_time"), timeout=10)
    got = full()
    stamps = {
        "schedule_time": got.schedule_time,
        "first_attempt.dispatch_time": got.first_attempt.dispatch_time,
        "last_attempt.schedule_time": got.last_attempt.schedule_time,
        "last_attempt.dispatch_time": got.last_attempt.dispatch_time,
        "last_attempt.response_time": got.last_attempt.response_time,
    }
    for what, stamp in stamps.items():
        assert stamp.seconds > 0, what
        assert stamp.nanos % 1_000 == 0, f"{what} has nanos {stamp.nanos}"
    purged = tasks_v2.Queue.pb(client.purge_queue(name=queue))
    assert purged.purge_time.seconds > 0
    assert purged.purge_time.nanos % 1_000 == 0
