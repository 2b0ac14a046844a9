"""Fixtures for the worker's tests: a local issuer, and the worker in or out of process.

`Worker` is what a test talks to: `post` a task, read what the test handlers
recorded (`runs`), wait for a log entry. `AppWorker` is `create_app()` in this
process behind `httpx.ASGITransport` (most tests); `ProcessWorker` is
`python -m service` as a subprocess (signals and shutdown only). The fixtures
deliberately configure both the same way, from environment variables, so a test
exercises the configuration a deployment would give.
"""

from __future__ import annotations

import abc
import contextlib
import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from contract.names import WORKER_ENV_ALLOWED_INVOKERS, WORKER_ENV_AUDIENCE, WORKER_ENV_CERTS_URL
from service.app import create_app
from service.config import Settings
from tests.service.asgi import AppServer, LogCapture, capture_logs
from tests.service.fixtures_tasks import RECORD_FILE_ENV
from tests.service.support import (
    DEFAULT_AUDIENCE,
    DEFAULT_INVOKER,
    LocalIssuer,
    WorkerProcess,
    iter_json_lines,
)

FIXTURE_MODULE = "tests.service.fixtures_tasks"
PROJECT = "test-project"


class Worker(abc.ABC):
    """A worker under test plus the file its test handlers record into: in this
    process (`AppWorker`) or as a process (`ProcessWorker`)."""

    def __init__(self, record_file: Path, issuer: LocalIssuer | None) -> None:
        self.record_file = record_file
        self.issuer = issuer

    @abc.abstractmethod
    def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> httpx.Response:
        """One HTTP request to the worker."""

    @abc.abstractmethod
    def wait_for_log(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """The first log entry matching `predicate`, waiting up to `timeout_s`."""

    @abc.abstractmethod
    def entries(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """Every log entry so far matching `predicate`."""

    def post(
        self,
        task_type: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> httpx.Response:
        """POST /tasks/{type}; a token from the issuer unless `token` is given."""
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if token is None and self.issuer is not None:
            token = self.issuer.token()
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        content = raw if raw is not None else json.dumps(body).encode()
        return self.request(
            "POST", f"/tasks/{task_type}", content=content, headers=all_headers, timeout=timeout
        )

    def runs(self, task_id: str, event: str = "start") -> list[dict[str, Any]]:
        """What the test handlers recorded for `task_id`."""
        return [
            r
            for r in iter_json_lines(self.record_file)
            if r["id"] == task_id and r["event"] == event
        ]


class AppWorker(Worker):
    """`create_app()` in this process (see tests.service.asgi)."""

    def __init__(
        self, server: AppServer, logs: LogCapture, record_file: Path, issuer: LocalIssuer | None
    ) -> None:
        super().__init__(record_file, issuer)
        self.server = server
        self.logs = logs

    def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> httpx.Response:
        return self.server.request(method, path, content=content, headers=headers, timeout=timeout)

    def wait_for_log(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0
    ) -> dict[str, Any]:
        return self.logs.wait_for_log(predicate, timeout_s)

    def entries(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return self.logs.entries(predicate)


class ProcessWorker(Worker):
    """`python -m service` as a subprocess (see tests.service.support)."""

    def __init__(
        self, process: WorkerProcess, record_file: Path, issuer: LocalIssuer | None
    ) -> None:
        super().__init__(record_file, issuer)
        self.process = process

    @property
    def url(self) -> str:
        return self.process.url

    def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> httpx.Response:
        return httpx.request(
            method, f"{self.url}{path}", content=content, headers=headers, timeout=timeout
        )

    def wait_for_log(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0
    ) -> dict[str, Any]:
        return self.process.wait_for_log(predicate, timeout_s)

    def entries(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return self.process.entries(predicate)


def new_id() -> str:
    return uuid.uuid4().hex[:16]


@pytest.fixture(scope="session")
def issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer() as local_issuer:
        yield local_issuer


def _worker_env(
    record_file: Path, issuer: LocalIssuer | None, env: Mapping[str, str] | None
) -> dict[str, str]:
    worker_env = {
        "HOST": "127.0.0.1",  # as the process is run (WorkerProcess): loopback only
        "TASKS_EXTRA_MODULES": FIXTURE_MODULE,
        RECORD_FILE_ENV: str(record_file),
        "GOOGLE_CLOUD_PROJECT": PROJECT,
    }
    if issuer is not None:
        worker_env[WORKER_ENV_AUDIENCE] = DEFAULT_AUDIENCE
        worker_env[WORKER_ENV_ALLOWED_INVOKERS] = DEFAULT_INVOKER
        worker_env[WORKER_ENV_CERTS_URL] = issuer.certs_url
    worker_env.update(env or {})
    return worker_env


@contextlib.contextmanager
def app_worker(
    tmp: Path, issuer: LocalIssuer | None, env: Mapping[str, str] | None = None
) -> Iterator[AppWorker]:
    """`create_app()` configured from `env` as the process would be, served in-process.

    `env` is also set in `os.environ` meanwhile: handlers and the metadata lookup
    read their own variables from there.
    """
    record_file = tmp / f"records-{new_id()}.jsonl"
    worker_env = _worker_env(record_file, issuer, env)
    with pytest.MonkeyPatch.context() as patch, capture_logs() as logs:
        for name, value in worker_env.items():
            patch.setenv(name, value)
        app = create_app(Settings.from_env(worker_env))
        with AppServer(app) as server:
            yield AppWorker(server, logs, record_file, issuer)


def start_worker(
    tmp: Path, issuer: LocalIssuer | None, env: Mapping[str, str] | None = None
) -> ProcessWorker:
    """`python -m service` as a subprocess; the caller stops it (`.process.stop()`)."""
    record_file = tmp / f"records-{new_id()}.jsonl"
    worker_env = _worker_env(record_file, None, env)
    if issuer is None:
        process = WorkerProcess(worker_env)
    else:
        process = WorkerProcess.with_auth(issuer, env=worker_env)
    return ProcessWorker(process, record_file, issuer)


@pytest.fixture(scope="module")
def worker(issuer: LocalIssuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppWorker]:
    """One in-process worker with the token check on, shared by a test module."""
    with app_worker(tmp_path_factory.mktemp("worker"), issuer) as running:
        yield running
