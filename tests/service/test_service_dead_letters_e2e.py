"""No task vanishes: the emulator, the real worker and a real Cloud Storage API.

The Cloud Tasks emulator dispatches to `python -m service` (a process) whose handlers
always fail; the queue allows 3 attempts, and the worker is told so through
`TASKS_RETRY_POLICIES` as the program tells it. The worker writes dead letters through
the official `google-cloud-storage` client to `gcp-storage-emulator` (started the way
the local stack starts it, `devstack.local_storage`), and the test reads them back
with the same client: exactly one record per task, with its whole body, and every
task gone from the queue after exactly three attempts.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.api_core.exceptions import NotFound
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2
from google.cloud.storage import Client
from google.protobuf import duration_pb2

from contract.names import WORKER_ENV_DEAD_LETTER_BUCKET, WORKER_ENV_RETRY_POLICIES
from contract.retry_policy import (
    HEADER_NOT_BEFORE,
    HEADER_TASK_RETRY_CONFIG,
    RetryPolicy,
    dump_policies,
    not_before_header,
)
from devstack import local_storage, processes
from devstack.state import StackPaths
from emulator.testing import EmulatorProcess
from tests.service.conftest import FIXTURE_MODULE, new_id
from tests.service.support import WorkerProcess, iter_json_lines

pytestmark = pytest.mark.integration

LOCATION = "projects/dl-test/locations/us-central1"
BUCKET = "dl-test-dead-letters"
ATTEMPTS = 3
POLICY = RetryPolicy(
    max_attempts=ATTEMPTS, min_backoff=1, max_backoff=1, max_doublings=0, max_retry_duration=0
)
LARGE = 900_000  # bytes of payload: near the 1 MiB task limit, far past a log entry's


def _wait_until(condition: Callable[[], Any], timeout_s: float = 40.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("dead-letters")
    record_file = root / "records.jsonl"
    started: list[processes.Started] = []
    store = local_storage.start_storage(
        StackPaths.for_stack("e2e", root),
        "127.0.0.1",
        BUCKET,
        adopt=started.append,
        drop=started.remove,
    )
    try:
        with EmulatorProcess() as emulator:
            worker = WorkerProcess(
                {
                    "TASKS_EXTRA_MODULES": FIXTURE_MODULE,
                    "TASKS_TEST_RECORD_FILE": str(record_file),
                    WORKER_ENV_RETRY_POLICIES: dump_policies({"default": POLICY}),
                    WORKER_ENV_DEAD_LETTER_BUCKET: BUCKET,
                    **local_storage.worker_env(store),
                }
            )
            try:
                client = emulator.client()
                queue = client.create_queue(
                    parent=LOCATION,
                    queue=tasks_v2.Queue(
                        name=f"{LOCATION}/queues/dl-{new_id()[:8]}",
                        retry_config=tasks_v2.RetryConfig(
                            max_attempts=ATTEMPTS,
                            min_backoff=duration_pb2.Duration(seconds=1),
                            max_backoff=duration_pb2.Duration(seconds=1),
                            max_doublings=0,
                        ),
                    ),
                )
                gcs = Client(
                    project="test",
                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                    client_options={"api_endpoint": store.record.url},
                )
                yield {
                    "client": client,
                    "queue": queue.name,
                    "worker": worker,
                    "records": record_file,
                    "bucket": gcs.bucket(BUCKET),
                    "storage_dir": root / "e2e" / "storage",
                }
            finally:
                worker.stop()
    finally:
        for each in started:
            processes.stop(each.record, child=each.process)


def _create(
    stack: dict[str, Any], task_type: str, body: bytes, own: RetryPolicy | None = None
) -> str:
    headers = {
        "Content-Type": "application/json",
        # What the enqueue helper adds (enqueue/spec.py).
        HEADER_NOT_BEFORE: not_before_header(datetime.now(UTC)),
    }
    if own is not None:
        headers[HEADER_TASK_RETRY_CONFIG] = json.dumps(own.to_json())
    task = tasks_v2.Task(
        name=f"{stack['queue']}/tasks/{new_id()}",
        http_request=tasks_v2.HttpRequest(
            http_method=tasks_v2.HttpMethod.POST,
            url=f"{stack['worker'].url}/tasks/{task_type}",
            headers=headers,
            body=body,
        ),
        retry_config=None
        if own is None
        else tasks_v2.RetryConfig(
            max_attempts=own.max_attempts,
            min_backoff=duration_pb2.Duration(seconds=int(own.min_backoff)),
            max_backoff=duration_pb2.Duration(seconds=int(own.max_backoff)),
        ),
    )
    created: tasks_v2.Task = stack["client"].create_task(parent=stack["queue"], task=task)
    return created.name


def _gone(stack: dict[str, Any], name: str) -> bool:
    try:
        stack["client"].get_task(name=name)
    except NotFound:
        return True
    return False


def _record(stack: dict[str, Any], name: str) -> dict[str, Any]:
    queue_id, task_id = name.split("/")[-3], name.rsplit("/", 1)[1]
    blob = stack["bucket"].blob(f"{queue_id}/{task_id}.json")
    record: dict[str, Any] = json.loads(blob.download_as_bytes())
    return record


def _body(record: dict[str, Any]) -> bytes:
    if record["body_encoding"] == "base64":
        return base64.b64decode(record["body"])
    text: str = record["body"]
    return text.encode("utf-8")


def test_every_failing_task_ends_as_exactly_one_whole_dead_letter(stack: dict[str, Any]) -> None:
    sent: dict[str, tuple[str, bytes]] = {}
    for index in range(4):
        payload = {"id": new_id(), "message": "x" * (LARGE if index == 0 else 10)}
        body = json.dumps(payload).encode()
        sent[_create(stack, "fail_transient", body)] = (payload["id"], body)
    crash = json.dumps({"id": new_id(), "message": "boom é"}).encode()
    sent[_create(stack, "crash", crash)] = (json.loads(crash)["id"], crash)

    _wait_until(lambda: all(_gone(stack, name) for name in sent), timeout_s=60)
    # One object per task, named by queue and task: a second record could only overwrite.
    expected = {f"{n.split('/')[-3]}/{n.rsplit('/', 1)[1]}.json" for n in sent}
    assert expected <= {b.name for b in stack["bucket"].list_blobs()}
    runs = [r for r in iter_json_lines(stack["records"]) if r["event"] == "start"]
    for name, (task_id, body) in sent.items():
        record = _record(stack, name)
        assert _body(record) == body  # whole: 900 KB and all
        assert record["body_bytes"] == len(body)
        assert record["kind"] == "final_attempt"
        assert record["task_name"] == name.rsplit("/", 1)[1]
        assert record["queue"] == {"key": "default", "id": name.split("/")[-3]}
        assert record["attempts"]["made"] == ATTEMPTS
        assert record["attempts"]["previous_response"] in (500, 503)
        assert record["retry_policy"]["max_attempts"] == ATTEMPTS
        assert "authorization" not in record["headers"]
        # Exactly the attempts the queue allows: captured on the last, not before.
        assert len([r for r in runs if r["id"] == task_id]) == ATTEMPTS
    statuses = {_record(stack, n)["attempts"]["statuses"][-1]["status"] for n in sent}
    assert statuses == {500, 503}
    # One log entry points to each record, once.
    pointers = [
        p["dead_letter_uri"] for p in stack["worker"].entries(lambda e: "dead_letter_uri" in e)
    ]
    for object_name in expected:
        assert pointers.count(f"gs://{BUCKET}/{object_name}") == 1


def test_a_task_with_its_own_retry_config_gets_exactly_that_many_attempts(
    stack: dict[str, Any],
) -> None:
    own = RetryPolicy(
        max_attempts=2, min_backoff=1, max_backoff=1, max_doublings=0, max_retry_duration=0
    )
    task_id = new_id()
    body = json.dumps({"id": task_id}).encode()
    name = _create(stack, "fail_transient", body, own)
    _wait_until(lambda: _gone(stack, name))
    record = _record(stack, name)
    assert (record["attempts"]["made"], record["retry_policy"]) == (2, own.to_json())
    runs = [r for r in iter_json_lines(stack["records"]) if r["id"] == task_id]
    assert len([r for r in runs if r["event"] == "start"]) == 2


def test_a_body_that_is_not_utf8_is_kept_as_base64(stack: dict[str, Any]) -> None:
    body = b"\xff\xfe\x00 not json"
    name = _create(stack, "fail_transient", body)
    _wait_until(lambda: _gone(stack, name))
    record = _record(stack, name)
    # Not a payload at all: a permanent dead letter on the first attempt, body intact.
    assert (record["kind"], record["body_encoding"]) == ("permanent", "base64")
    assert _body(record) == body


def test_the_records_live_in_the_stack_directory(stack: dict[str, Any]) -> None:
    # On the emulator's disk store under the stack, so a restarted local stack keeps them.
    body = json.dumps({"id": new_id(), "message": "kept on disk"}).encode()
    name = _create(stack, "fail_transient", body)
    _wait_until(lambda: _gone(stack, name))
    task_file = name.rsplit("/", 1)[1] + ".json"
    [stored] = [p for p in Path(stack["storage_dir"]).rglob(task_file) if p.is_file()]
    assert _body(json.loads(stored.read_bytes())) == body
