"""Fixtures for `python -m ops`: the real Cloud Tasks emulator, a stack of two queues,
a worker stand-in that always answers 503, and the registry's gcp-storage-emulator.

Dead letters are written into the storage emulator exactly as the worker writes them:
`write_dead_letter` is a copy of the minimum of `service.gcs_dead_letters` on the
dead-letters branch (`object_name`, `dead_letter_record`, the create-only upload),
which is not merged yet. Keep the two in step (format 1).
"""

from __future__ import annotations

import base64
import http.server
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage, tasks_v2

from emulator.testing import EmulatorProcess
from tests.enqueue.conftest import (
    AUDIENCE,
    INVOKER,
    LOCATION,
    PROJECT,
    target as target,  # the recording worker, as a fixture here
)

BUCKET = "ops-dead-letters"
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with EmulatorProcess() as emu:
        yield emu


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's emulator variables cannot redirect a test."""
    monkeypatch.delenv("CLOUD_TASKS_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)


class _Answer503(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def failing_worker() -> Iterator[str]:
    """A worker that fails every attempt (503), so tasks stay with an attempt history."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer503)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class Stack:
    """Two queues (`default`, `email`) on the emulator and their outputs file."""

    outputs: Path
    queues: dict[str, str]
    emulator: EmulatorProcess

    def tasks(self, key: str) -> list[tasks_v2.Task]:
        request = tasks_v2.ListTasksRequest(
            parent=self.queues[key], response_view=tasks_v2.Task.View.FULL
        )
        return list(self.emulator.client().list_tasks(request=request))


def make_stack(
    emu: EmulatorProcess,
    tmp_path: Path,
    *,
    service_url: str = "https://worker.ops-test.example",
    paused: bool = True,
    extra: Mapping[str, str] | None = None,
) -> Stack:
    client = emu.client()
    parent = f"projects/{PROJECT}/locations/{LOCATION}"
    n = next(_numbers)
    queues = {key: f"{parent}/queues/{key}-{n}-{time.time_ns()}" for key in ("default", "email")}
    for path in queues.values():
        client.create_queue(parent=parent, queue=tasks_v2.Queue(name=path))
        if paused:
            client.pause_queue(name=path)
    outputs = {
        "project": PROJECT,
        "location": LOCATION,
        "queue": queues["default"],
        "service_url": service_url,
        "audience": AUDIENCE,
        "invoker_email": INVOKER,
        "emulator_host": emu.grpc_host,
        "emulator_url": emu.http_url,
        "queues": queues,
        "routes": {"send-email": "email"},
        "dispatch_deadlines": {"default": "60s", "email": "30s"},
        **(extra or {}),
    }
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps(outputs))
    return Stack(outputs_file, queues, emu)


# --- Cloud Storage ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def storage_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gcp-storage-emulator as a process on 127.0.0.1, with the dead-letter bucket."""
    port = _free_port()
    log = (tmp_path_factory.mktemp("storage") / "storage.log").open("wb")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1"),
            *("--port", str(port), "--in-memory", "--default-bucket", BUCKET),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url + "/", timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"gcp-storage-emulator did not start; see {log.name}") from None
            time.sleep(0.1)
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def storage_client(url: str) -> storage.Client:
    return storage.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": url},
    )


@pytest.fixture
def bucket(storage_url: str) -> str:
    """A fresh dead-letter bucket per test, so `--all` sees this test's letters only."""
    name = f"{BUCKET}-{next(_numbers)}-{time.time_ns()}"
    storage_client(storage_url).create_bucket(name)
    return name


def dead_letter_object_name(queue_id: str, task_id: str) -> str:
    """`service.gcs_dead_letters.object_name` for a named task in a named queue."""
    return f"{queue_id}/{task_id}.json"


def dead_letter_record(
    *,
    task_type: str,
    body: bytes,
    queue_key: str,
    queue_id: str,
    task_id: str,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`service.gcs_dead_letters.dead_letter_record` of a final attempt (3 of 3, 503)."""
    try:
        text, encoding = body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(body).decode("ascii"), "base64"
    stored_headers = {
        "content-type": "application/json",
        "x-cloudtasks-taskretrycount": "2",
        "x-cloudtasks-taskexecutioncount": "2",
        "x-cloudtasks-taskpreviousresponse": "503",
        "x-cloudtasks-queuename": queue_id,
        "x-cloudtasks-taskname": task_id,
        "user-agent": "Google-Cloud-Tasks",
        "x-tasks-not-before": "1893553445",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        **(headers or {}),
    }
    return {
        "format": 1,
        "recorded_at": "2030-01-02T03:04:05+00:00",
        "kind": "final_attempt",
        "last_error": "final attempt (3 of 3): handler failed: backend down",
        "task_type": task_type,
        "task_name": task_id,
        "queue": {"key": queue_key, "id": queue_id},
        "attempts": {
            "made": 3,
            "retry_count": 2,
            "execution_count": 2,
            "previous_response": 503,
            "retry_reason": None,
            "eta": "1893553445.5",
            "statuses": [{"attempt": 2, "status": 503}, {"attempt": 3, "status": 503}],
        },
        "retry_policy": {"max_attempts": 3},
        "headers": stored_headers,
        "body": text,
        "body_encoding": encoding,
        "body_bytes": len(body),
    }


def write_dead_letter(url: str, bucket: str, name: str, record: Mapping[str, Any] | bytes) -> None:
    """Upload as the worker's sink does: JSON, create-only (`if_generation_match=0`)."""
    data = record if isinstance(record, bytes) else json.dumps(record).encode()
    storage_client(url).bucket(bucket).blob(name).upload_from_string(
        data, content_type="application/json", if_generation_match=0
    )
