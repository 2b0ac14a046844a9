"""The dead-letter bucket of a local stack: a Cloud Storage emulator the official
client reaches through `storage_emulator_host`, on a port that may be taken."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud.storage import Client

from contract.names import OUTPUT_DEAD_LETTER_BUCKET, OUTPUT_STORAGE_EMULATOR_HOST
from devstack import processes, runtime
from devstack.local_storage import (
    ROLE,
    planned_bucket,
    spawn_storage,
    storage_outputs,
    worker_env,
)
from devstack.state import StackPaths
from enqueue import Enqueuer, load_outputs
from tests.devstack.stack_helpers import LocalStack

pytestmark = pytest.mark.integration


def test_the_bucket_is_served_even_when_the_chosen_port_is_taken(
    local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    ports = iter([taken])
    real_free_port = processes.free_port
    monkeypatch.setattr(
        processes, "free_port", lambda host: next(ports, None) or real_free_port(host)
    )
    try:
        running = runtime.up("dev", root=local_stack.root, say=lambda _: None)
    finally:
        holder.close()
    try:
        outputs = json.loads(local_stack.paths.outputs_file.read_text())
        url = outputs[OUTPUT_STORAGE_EMULATOR_HOST]
        assert url != f"http://127.0.0.1:{taken}"
        assert [p.role for p in running.state.processes].count(ROLE) == 1
        # The planned bucket exists, reached as an operator reaches it.
        client = Client(
            project="ops",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": url},
        )
        bucket = client.get_bucket(outputs[OUTPUT_DEAD_LETTER_BUCKET])
        assert bucket.name.endswith("-dead-letters")
    finally:
        runtime.stop_running(running, lambda _: None)
    assert not processes.is_ours(next(p for p in running.state.processes if p.role == ROLE))


def test_a_task_the_worker_cannot_run_lands_in_the_planned_bucket(
    local_stack: LocalStack,
) -> None:
    """The wiring `up` gives the worker (bucket name, STORAGE_EMULATOR_HOST, policies),
    end to end: a task through the enqueue helper, its dead letter through the client."""
    local_stack.up()
    outputs = json.loads(local_stack.paths.outputs_file.read_text())
    with Enqueuer(load_outputs(local_stack.paths.outputs_file)) as enqueuer:
        name = enqueuer.send("no-such-type", {"order": 42}, key="dead-letter-wiring")
    client = Client(
        project="ops",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": outputs[OUTPUT_STORAGE_EMULATOR_HOST]},
    )
    bucket = client.bucket(outputs[OUTPUT_DEAD_LETTER_BUCKET])
    queue_id, task_id = name.split("/")[-3], name.rsplit("/", 1)[1]
    blob = bucket.blob(f"{queue_id}/{task_id}.json")
    deadline = time.monotonic() + 20
    while not blob.exists():
        assert time.monotonic() < deadline, "no dead letter in the bucket"
        time.sleep(0.1)
    record = json.loads(blob.download_as_bytes())
    assert (record["kind"], record["task_type"]) == ("permanent", "no-such-type")
    assert json.loads(record["body"]) == {"order": 42}
    assert record["queue"]["key"] == "default"
    assert "X-Tasks-Not-Before".lower() in record["headers"]
    worker_log = local_stack.paths.worker_log.read_text()
    assert f"gs://{bucket.name}/{queue_id}/{task_id}.json" in worker_log


def test_the_stacks_remembered_ports_are_never_given_to_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After `down` the worker's remembered port is free, and the kernel may hand it
    # out again: storage starts first and must leave it to the worker.
    remembered = processes.free_port("127.0.0.1")
    other = processes.free_port("127.0.0.1")
    ports = iter([remembered, remembered, other])
    monkeypatch.setattr(processes, "free_port", lambda host: next(ports))
    started = spawn_storage(StackPaths.for_stack("dev", tmp_path), "127.0.0.1", {remembered})
    try:
        assert started.record.url == f"http://127.0.0.1:{other}"
    finally:
        processes.stop(started.record, child=started.process)


def test_without_a_planned_bucket_nothing_is_added() -> None:
    assert planned_bucket({"queue": "q"}) is None
    assert storage_outputs(None, None) == {}
    assert worker_env(None) == {}
