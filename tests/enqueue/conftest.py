"""Fixtures for the enqueue tests: a real emulator, a real HTTP target, real queues.

The target is a threaded ``http.server`` on 127.0.0.1 (port 0) that records every
request and answers 200. Each test gets its own queue (unique name) so tests
stay independent while sharing one emulator process per module.
"""

from __future__ import annotations

import http.server
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.cloud import tasks_v2

from emulator.testing import EmulatorProcess
from enqueue import StackOutputs

PROJECT = "enqueue-test"
LOCATION = "us-central1"
AUDIENCE = "https://worker.enqueue-test.example"
INVOKER = "tasks-invoker@enqueue-test.iam.gserviceaccount.com"
_queue_numbers = itertools.count(1)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Target:
    url: str
    received: list[Received] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.received) >= count, timeout=timeout)
            return list(self.received)


def _handler(target: Target) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with target.cond:
                target.received.append(Received(self.path, dict(self.headers.items()), body))
                target.cond.notify_all()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output readable

    return Handler


@pytest.fixture
def target() -> Iterator[Target]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(Target("")))
    host, port = server.server_address[:2]
    recorder = Target(f"http://{host!s}:{port}")
    server.RequestHandlerClass = _handler(recorder)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield recorder
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with EmulatorProcess() as emu:
        yield emu


def make_queue(emu: EmulatorProcess, *, paused: bool) -> str:
    """A fresh queue on the emulator, created with the official client."""
    client = emu.client()
    name = (
        f"projects/{PROJECT}/locations/{LOCATION}/queues/q{next(_queue_numbers)}-{time.time_ns()}"
    )
    client.create_queue(
        parent=f"projects/{PROJECT}/locations/{LOCATION}", queue=tasks_v2.Queue(name=name)
    )
    if paused:
        client.pause_queue(name=name)
    return name


def outputs_for(emu: EmulatorProcess, queue: str, service_url: str) -> StackOutputs:
    return StackOutputs.from_mapping(outputs_dict(emu, queue, service_url))


def outputs_dict(emu: EmulatorProcess, queue: str, service_url: str) -> dict[str, str]:
    return {
        "project": PROJECT,
        "location": LOCATION,
        "queue": queue,
        "service_url": service_url,
        "audience": AUDIENCE,
        "invoker_email": INVOKER,
        "emulator_host": emu.grpc_host,
        "emulator_url": emu.http_url,
    }


def write_outputs(path: Path, emu: EmulatorProcess, queue: str, service_url: str) -> Path:
    path.write_text(json.dumps(outputs_dict(emu, queue, service_url)))
    return path


def task_names(emu: EmulatorProcess, queue: str) -> list[str]:
    """Every task in the queue, listed with the official client."""
    client = emu.client()
    return [
        task.name
        for task in client.list_tasks(
            request=tasks_v2.ListTasksRequest(parent=queue, page_size=1000)
        )
    ]


@pytest.fixture
def no_emulator_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sure a developer's CLOUD_TASKS_EMULATOR_HOST cannot redirect a test."""
    monkeypatch.delenv("CLOUD_TASKS_EMULATOR_HOST", raising=False)
