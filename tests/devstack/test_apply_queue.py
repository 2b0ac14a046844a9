"""The planned queue, created and then kept equal to the plan, in a real emulator."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import tasks_v2

from contract.resources import QUEUE_TYPE
from devstack.realise import LocalRealisation, analyse
from devstack.runtime import apply_queue, tasks_client
from emulator.testing import EmulatorProcess
from plan.model import Plan

pytestmark = pytest.mark.integration


def realise(data: dict[str, Any]) -> LocalRealisation:
    """The verdicts on a plan given as JSON data (tests mutate copies of it)."""
    return analyse(Plan.from_json(data))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tasks_v2.CloudTasksClient]:
    with EmulatorProcess(tmp_path / "emulator.db") as emulator:
        client = tasks_client(emulator.grpc_host)
        try:
            yield client
        finally:
            client.transport.close()  # type: ignore[no-untyped-call]


def _queue_inputs(plan: dict[str, Any]) -> dict[str, Any]:
    [queue] = [r for r in plan["resources"] if r["type"] == QUEUE_TYPE]
    inputs: dict[str, Any] = queue["inputs"]
    return inputs


def test_create_then_follow_the_plan(
    client: tasks_v2.CloudTasksClient, dev_plan: dict[str, Any]
) -> None:
    realisation = realise(dev_plan)
    created = apply_queue(client, realisation.queue, worker_port=4321)
    planned = _queue_inputs(dev_plan)
    assert created.name == realisation.queue.path
    assert created.state == tasks_v2.Queue.State.RUNNING
    rate = planned["rateLimits"]
    assert created.rate_limits.max_dispatches_per_second == rate["maxDispatchesPerSecond"]
    assert created.retry_config.max_attempts == planned["retryConfig"]["maxAttempts"]

    # The same data file, a changed plan: the existing queue is brought to it.
    changed = copy.deepcopy(dev_plan)
    inputs = _queue_inputs(changed)
    inputs["rateLimits"]["maxDispatchesPerSecond"] = 2
    inputs["retryConfig"]["maxAttempts"] = 7
    inputs["desiredState"] = "PAUSED"
    inputs["httpTarget"] = {
        "uriOverride": {"host": "worker.run.app", "pathOverride": {"path": "/tasks/smoke"}}
    }
    updated = apply_queue(client, realise(changed).queue, worker_port=5555)
    assert updated.state == tasks_v2.Queue.State.PAUSED
    stored = client.get_queue(name=realisation.queue.path)
    assert stored.rate_limits.max_dispatches_per_second == 2
    assert stored.retry_config.max_attempts == 7
    override = stored.http_target.uri_override
    assert (override.host, override.port) == ("127.0.0.1", 5555)
    assert override.path_override.path == "/tasks/smoke"

    # Back to the original plan: running again, and the queue-level target is gone.
    again = apply_queue(client, realisation.queue, worker_port=4321)
    assert again.state == tasks_v2.Queue.State.RUNNING
    stored = client.get_queue(name=realisation.queue.path)
    assert stored.rate_limits.max_dispatches_per_second == rate["maxDispatchesPerSecond"]
    assert not stored.http_target.uri_override.host
