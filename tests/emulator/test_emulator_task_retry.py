"""Task-level ``retry_config`` (task.proto field 12): it overrides the queue's for that task.

In-process on a fake clock for the exact attempt counts and gaps, and through
the official client (gRPC and REST) against a real emulator process for the
wire: the field is accepted, echoed by GetTask, and governs real deliveries.
"""

from __future__ import annotations

import itertools
from typing import Any

import grpc
import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2

from emulator.errors import ApiError
from emulator.retry import RetryPolicy
from tests.emulator.inproc import Harness
from tests.emulator.support import Target, eventually

URL = "https://worker.example.com"
FULL = tasks_v2.Task.View.FULL


def _gaps(times: list[float]) -> list[float]:
    return [round(b - a, 3) for a, b in itertools.pairwise(times)]


async def test_task_max_attempts_overrides_the_queues(core: Harness) -> None:
    queue = core.create_queue(
        retry_config={"max_attempts": 10, "min_backoff": "1s", "max_backoff": "1s"}
    )
    own = core.create_task(
        queue, http_request={"url": f"{URL}/status/500"}, retry_config={"max_attempts": 3}
    )
    plain = core.create_task(queue, http_request={"url": f"{URL}/status/500"})
    await core.advance(60)
    assert len(core.deliverer.for_task(own.name)) == 3
    assert not core.exists(own.name)
    # The queue's own config still governs a task without one.
    assert len(core.deliverer.for_task(plain.name)) == 10


async def test_unset_task_fields_are_the_queues(core: Harness) -> None:
    queue = core.create_queue(
        retry_config={"max_attempts": 4, "min_backoff": "1s", "max_backoff": "10s"}
    )
    # Only the backoff is the task's; max_attempts (4) and max_backoff come from the queue.
    task = core.create_task(
        queue,
        http_request={"url": f"{URL}/status/503"},
        retry_config={"min_backoff": "3s"},
    )
    await core.advance(120)
    sent = core.deliverer.for_task(task.name)
    # 3 s doubling, capped at 10 s; 503's Retry-After of 2 s is below the backoff.
    assert _gaps([s.at for s in sent]) == [3, 6, 10]


async def test_task_max_retry_duration_zero_means_unlimited_over_a_queue_limit(
    core: Harness,
) -> None:
    queue = core.create_queue(
        retry_config={
            "max_attempts": -1,
            "max_retry_duration": "2s",
            "min_backoff": "1s",
            "max_backoff": "1s",
        }
    )
    task = core.create_task(
        queue,
        http_request={"url": f"{URL}/status/500"},
        retry_config={"max_attempts": 6, "max_retry_duration": "0s"},
    )
    await core.advance(60)
    assert len(core.deliverer.for_task(task.name)) == 6


async def test_task_retry_config_is_echoed_with_durations_truncated(core: Harness) -> None:
    queue = core.create_queue()
    task = core.create_task(
        queue,
        http_request={"url": f"{URL}/ok"},
        retry_config={"max_attempts": 2, "min_backoff": "1.9s", "max_backoff": "7.5s"},
        schedule_time={"seconds": int(core.now()) + 3600},
    )
    got = core.get_task(task.name)
    assert got.retry_config.max_attempts == 2
    assert (got.retry_config.min_backoff.seconds, got.retry_config.min_backoff.nanos) == (1, 0)
    assert (got.retry_config.max_backoff.seconds, got.retry_config.max_backoff.nanos) == (7, 0)
    # Nothing the task left unset is filled in: the queue's values apply at dispatch.
    assert not got.retry_config.HasField("max_retry_duration")
    assert got.retry_config.max_doublings == 0


@pytest.mark.parametrize(
    ("retry_config", "needle"),
    [
        ({"max_attempts": -2}, "Task.retry_config.max_attempts"),
        ({"max_doublings": -1}, "Task.retry_config.max_doublings"),
        ({"min_backoff": "-1s"}, "Task.retry_config.min_backoff must not be negative"),
        # 7200 s exceeds the queue's max_backoff (3600 s) the task inherits.
        ({"min_backoff": "7200s"}, "min_backoff must not exceed max_backoff"),
    ],
)
async def test_bad_task_retry_config_is_invalid_argument(
    core: Harness, retry_config: dict[str, Any], needle: str
) -> None:
    queue = core.create_queue()
    with pytest.raises(ApiError) as exc:
        core.create_task(queue, http_request={"url": f"{URL}/ok"}, retry_config=retry_config)
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in exc.value.message


def test_policy_merge_is_field_by_field() -> None:
    queue_rc = tasks_v2.RetryConfig.pb(
        tasks_v2.RetryConfig(
            max_attempts=5,
            max_retry_duration={"seconds": 30},
            min_backoff={"seconds": 1},
            max_backoff={"seconds": 8},
            max_doublings=2,
        )
    )
    task = tasks_v2.Task.pb(tasks_v2.Task(retry_config={"max_backoff": {"seconds": 4}}))
    assert RetryPolicy.for_task(queue_rc, task) == RetryPolicy(5, 30.0, 1.0, 4.0, 2)
    bare = tasks_v2.Task.pb(tasks_v2.Task())
    assert RetryPolicy.for_task(queue_rc, bare) == RetryPolicy.from_pb(queue_rc)


# -- through the official client against a real process --------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_official_client_task_retry_config_governs_deliveries(
    transport: str, emu: Any, make_queue: Any, target: Target
) -> None:
    client = emu.client(transport)
    queue = make_queue(retry_config={"max_attempts": 50, "min_backoff": "1s", "max_backoff": "1s"})
    task = client.create_task(
        request={
            "parent": queue,
            "task": {
                "http_request": {"url": target.url("/status/500")},
                "retry_config": {
                    "max_attempts": 2,
                    "min_backoff": "0.1s",
                    "max_backoff": "0.4s",
                },
            },
            "response_view": FULL,
        }
    )
    assert task.retry_config.max_attempts == 2
    assert task.retry_config.min_backoff.total_seconds() == 0  # truncated to whole seconds
    assert task.retry_config.max_backoff.total_seconds() == 0
    assert len(target.wait_for(2, task.name, timeout=10)) == 2

    def gone() -> bool:
        try:
            client.get_task(name=task.name)
        except exceptions.NotFound:
            return True
        return False

    assert eventually(gone, timeout=10)
    # The queue allowed 50 attempts at 1 s; the task's own 2 attempts were all it got.
    assert len(target.wait_for(3, task.name, timeout=1.5)) == 2
