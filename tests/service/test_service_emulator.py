"""The worker behind the local Cloud Tasks emulator: the real delivery path.

Tasks are created with the official client, dispatched by the emulator with
its own OIDC tokens (RS256, verified against its /oauth2/v1/certs), and the
worker's test handlers record what reached them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.api_core.exceptions import NotFound
from google.cloud import tasks_v2
from google.protobuf import duration_pb2

from emulator.testing import EmulatorProcess
from tests.service.conftest import FIXTURE_MODULE, new_id
from tests.service.support import WorkerProcess, iter_json_lines

pytestmark = pytest.mark.integration

LOCATION = "projects/svc-test/locations/us-central1"
INVOKER = "tasks-invoker@svc-test.iam.gserviceaccount.com"
AUDIENCE = "https://worker-svc-test.a.run.app"


def _wait_until(condition: Callable[[], Any], timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    record_file = tmp_path_factory.mktemp("emu") / "records.jsonl"
    with EmulatorProcess() as emulator:
        worker = WorkerProcess(
            {
                "TASKS_AUDIENCE": AUDIENCE,
                "TASKS_ALLOWED_INVOKERS": INVOKER,
                "TASKS_CERTS_URL": emulator.certs_url,
                "TASKS_EXTRA_MODULES": FIXTURE_MODULE,
                "TASKS_TEST_RECORD_FILE": str(record_file),
            }
        )
        try:
            client = emulator.client()
            queue = client.create_queue(
                parent=LOCATION,
                queue=tasks_v2.Queue(
                    name=f"{LOCATION}/queues/svc-{new_id()[:8]}",
                    retry_config=tasks_v2.RetryConfig(
                        max_attempts=5,
                        min_backoff=duration_pb2.Duration(seconds=1),
                        max_backoff=duration_pb2.Duration(seconds=2),
                    ),
                ),
            )
            yield {
                "client": client,
                "queue": queue.name,
                "worker": worker,
                "records": record_file,
            }
        finally:
            worker.stop()


def _create(stack: dict[str, Any], task_type: str, payload: dict[str, Any], email: str) -> str:
    task = tasks_v2.Task(
        name=f"{stack['queue']}/tasks/{new_id()}",
        http_request=tasks_v2.HttpRequest(
            http_method=tasks_v2.HttpMethod.POST,
            url=f"{stack['worker'].url}/tasks/{task_type}",
            headers={"Content-Type": "application/json"},
            body=json.dumps(payload).encode(),
            oidc_token=tasks_v2.OidcToken(service_account_email=email, audience=AUDIENCE),
        ),
    )
    created: tasks_v2.Task = stack["client"].create_task(parent=stack["queue"], task=task)
    return created.name


def _runs(stack: dict[str, Any], task_id: str) -> list[dict[str, Any]]:
    return [
        r for r in iter_json_lines(stack["records"]) if r["id"] == task_id and r["event"] == "start"
    ]


def _gone(stack: dict[str, Any], name: str) -> bool:
    try:
        stack["client"].get_task(name=name)
    except NotFound:
        return True
    return False


def test_task_is_delivered_verified_and_completed(stack: dict[str, Any]) -> None:
    task_id = new_id()
    name = _create(stack, "record", {"id": task_id}, INVOKER)
    [run] = _wait_until(lambda: _runs(stack, task_id))
    assert run["invoker_email"] == INVOKER
    assert run["task_name"] == name.rsplit("/", 1)[1]
    assert run["queue_name"] == stack["queue"].rsplit("/", 1)[1]
    assert run["retry_count"] == 0
    assert run["eta"] is not None
    _wait_until(lambda: _gone(stack, name))  # a 2xx completes (deletes) the task


def test_transient_failure_is_retried_with_the_previous_response(stack: dict[str, Any]) -> None:
    task_id = new_id()
    name = _create(stack, "flaky", {"id": task_id}, INVOKER)
    runs = _wait_until(lambda: len(_runs(stack, task_id)) >= 2 and _runs(stack, task_id))
    assert [r["retry_count"] for r in runs] == [0, 1]
    assert runs[1]["previous_response"] == 503
    _wait_until(lambda: _gone(stack, name))
    assert len(_runs(stack, task_id)) == 2


def test_token_of_another_identity_never_runs_the_handler(stack: dict[str, Any]) -> None:
    task_id = new_id()
    name = _create(stack, "record", {"id": task_id}, "intruder@svc-test.iam.gserviceaccount.com")
    _wait_until(
        lambda: stack["worker"].entries(
            lambda e: e.get("task_name") == name.rsplit("/", 1)[1] and e.get("status") == 403
        )
    )
    assert _runs(stack, task_id) == []
    task = stack["client"].get_task(name=name)
    assert task.dispatch_count >= 1
    stack["client"].delete_task(name=name)


def test_dead_letter_is_acknowledged(stack: dict[str, Any]) -> None:
    name = _create(stack, "strict", {"id": "x", "count": "many"}, INVOKER)
    short = name.rsplit("/", 1)[1]
    entry = _wait_until(
        lambda: stack["worker"].entries(
            lambda e: "dead_letter" in e and e["dead_letter"]["task_name"] == short
        )
    )[0]
    assert entry["dead_letter"]["headers"]["x-cloudtasks-taskretrycount"] == "0"
    _wait_until(lambda: _gone(stack, name))
