"""A three-queue stack, brought up locally from its stack file: every queue exists in the
emulator with its own planned settings (read back through the official client), the
outputs carry the maps, the worker knows every queue, and a task of each type arrives
through its own queue.

The stack file is tests/stacks/Pulumi.three-queues.yaml; the plan is evaluated from it
as `python -m devstack up --stack three-queues` evaluates a stack file in the project,
then realised with `up --plan-file` (tests/stack_files.py says why the file is not in
the project root).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from google.cloud import tasks_v2

from contract.names import (
    OUTPUT_AUDIENCE,
    OUTPUT_DISPATCH_DEADLINES,
    OUTPUT_EMULATOR_HOST,
    OUTPUT_INVOKER_EMAIL,
    OUTPUT_QUEUE,
    OUTPUT_QUEUES,
    OUTPUT_ROUTES,
    OUTPUT_SERVICE_URL,
    TASK_ROUTE_PREFIX,
    WORKER_ENV_QUEUES,
    WORKER_ENV_ROUTES,
)
from contract.routing import queue_for
from devstack.runtime import tasks_client
from plan.engine import evaluate_config
from tests.devstack.stack_helpers import LocalStack, write_plan
from tests.stack_files import THREE_QUEUES, stack_config

pytestmark = pytest.mark.integration

RECORD_FILE_ENV = "TASKS_TEST_RECORD_FILE"  # tests/service/fixtures_tasks.py


def _seconds(duration: Any) -> float:
    return float(duration.total_seconds())


@pytest.fixture
def three_queues(local_stack: LocalStack, tmp_path: Path) -> tuple[LocalStack, Path]:
    records = tmp_path / "records.jsonl"
    config = stack_config(THREE_QUEUES, tmp_path / "project")
    # The one addition to the stack file: where the test handlers record their runs.
    config["cloud-tasks-pipeline:worker_env"] = json.dumps([f"{RECORD_FILE_ENV}={records}"])
    plan = evaluate_config(THREE_QUEUES, config)
    local_stack.stack = THREE_QUEUES
    local_stack.start(plan_file=write_plan(tmp_path / "plan.json", plan.to_json()))
    return local_stack, records


def test_every_queue_has_its_planned_settings_and_the_outputs_the_maps(
    three_queues: tuple[LocalStack, Path],
) -> None:
    stack, _ = three_queues
    outputs = stack.outputs()
    assert list(outputs[OUTPUT_QUEUES]) == ["default", "email", "reports"]
    assert outputs[OUTPUT_QUEUE] == outputs[OUTPUT_QUEUES]["default"]
    assert outputs[OUTPUT_ROUTES] == {
        "enrich": "email",
        "record": "email",
        "record_sync": "reports",
    }
    assert outputs[OUTPUT_DISPATCH_DEADLINES] == {
        "default": "60s",
        "email": "30s",
        "reports": "1800s",
    }
    client = tasks_client(outputs[OUTPUT_EMULATOR_HOST])
    try:
        queues = {k: client.get_queue(name=p) for k, p in outputs[OUTPUT_QUEUES].items()}
    finally:
        client.transport.close()  # type: ignore[no-untyped-call]
    expected = {
        # key: (rate, concurrent, attempts, min_backoff, max_backoff, retry duration, sampling)
        "default": (5, 10, 5, 1, 300, 0, 1.0),
        "email": (2, 4, 3, 10, 60, 0, 1.0),
        "reports": (1, 2, 50, 60, 3600, 86400, 0.5),
    }
    for key, (rate, concurrent, attempts, low, high, duration, ratio) in expected.items():
        queue = queues[key]
        assert queue.state == tasks_v2.Queue.State.RUNNING, key
        assert queue.rate_limits.max_dispatches_per_second == rate, key
        assert queue.rate_limits.max_concurrent_dispatches == concurrent, key
        assert queue.retry_config.max_attempts == attempts, key
        assert _seconds(queue.retry_config.min_backoff) == low, key
        assert _seconds(queue.retry_config.max_backoff) == high, key
        assert _seconds(queue.retry_config.max_retry_duration) == duration, key
        assert queue.stackdriver_logging_config.sampling_ratio == pytest.approx(ratio), key
    # Only reports has a queue-level target: the invoker's token, pointed at the local worker.
    assert not queues["email"].http_target.oidc_token.service_account_email
    target = queues["reports"].http_target
    assert target.oidc_token.service_account_email == outputs[OUTPUT_INVOKER_EMAIL]
    assert f"http://127.0.0.1:{target.uri_override.port}" == outputs[OUTPUT_SERVICE_URL]


def test_the_worker_knows_every_queue_and_each_type_arrives_through_its_own(
    three_queues: tuple[LocalStack, Path],
) -> None:
    stack, records = three_queues
    outputs = stack.outputs()
    running = stack.started[0]
    assert running.realisation is not None
    env = running.realisation.worker.env
    ids = {k: p.rsplit("/", 1)[1] for k, p in outputs[OUTPUT_QUEUES].items()}
    assert json.loads(env[WORKER_ENV_QUEUES]) == ids
    assert json.loads(env[WORKER_ENV_ROUTES]) == outputs[OUTPUT_ROUTES]

    # One task of each type on the queue its route names (`bounded` has none: default),
    # created as the enqueue helper creates them: the invoker's OIDC token, the audience.
    client = tasks_client(outputs[OUTPUT_EMULATOR_HOST])
    try:
        for task_type in ("record", "record_sync", "bounded"):
            key = queue_for(task_type, outputs[OUTPUT_ROUTES])
            client.create_task(
                parent=outputs[OUTPUT_QUEUES][key],
                task=tasks_v2.Task(
                    http_request=tasks_v2.HttpRequest(
                        url=f"{outputs[OUTPUT_SERVICE_URL]}{TASK_ROUTE_PREFIX}{task_type}",
                        headers={"Content-Type": "application/json"},
                        body=json.dumps({"id": f"via-{key}"}).encode(),
                        oidc_token=tasks_v2.OidcToken(
                            service_account_email=outputs[OUTPUT_INVOKER_EMAIL],
                            audience=outputs[OUTPUT_AUDIENCE],
                        ),
                    )
                ),
            )
    finally:
        client.transport.close()  # type: ignore[no-untyped-call]
    deadline = time.monotonic() + 30
    seen: dict[str, str] = {}
    while time.monotonic() < deadline and len(seen) < 3:
        if records.exists():
            for line in records.read_text().splitlines():
                entry = json.loads(line)
                seen[entry["task_type"]] = entry["queue_name"]
        time.sleep(0.1)
    assert seen == {
        "record": ids["email"],
        "record_sync": ids["reports"],
        "bounded": ids["default"],
    }
