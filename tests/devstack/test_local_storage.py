"""The dead-letter bucket of a local stack: a Cloud Storage emulator the official
client reaches through `storage_emulator_host`, on a port that may be taken."""

from __future__ import annotations

import json
import socket

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud.storage import Client

from contract.names import OUTPUT_DEAD_LETTER_BUCKET, OUTPUT_STORAGE_EMULATOR_HOST
from devstack import processes, runtime
from devstack.local_storage import ROLE, planned_bucket, storage_outputs, worker_env
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


def test_without_a_planned_bucket_nothing_is_added() -> None:
    assert planned_bucket({"queue": "q"}) is None
    assert storage_outputs(None, None) == {}
    assert worker_env(None) == {}
