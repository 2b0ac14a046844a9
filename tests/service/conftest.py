"""Fixtures for the worker's tests: a local issuer and real worker processes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.support import LocalIssuer, WorkerProcess, iter_json_lines

FIXTURE_MODULE = "tests.service.fixtures_tasks"
PROJECT = "test-project"


@dataclass
class Worker:
    """A running worker plus the file its test handlers record into."""

    process: WorkerProcess
    record_file: Path
    issuer: LocalIssuer | None

    @property
    def url(self) -> str:
        return self.process.url

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
        return httpx.post(
            f"{self.url}/tasks/{task_type}", content=content, headers=all_headers, timeout=timeout
        )

    def runs(self, task_id: str, event: str = "start") -> list[dict[str, Any]]:
        """What the test handlers recorded for `task_id`."""
        return [
            r
            for r in iter_json_lines(self.record_file)
            if r["id"] == task_id and r["event"] == event
        ]

    def logs_for(self, task_id_or_name: str) -> list[dict[str, Any]]:
        return self.process.entries(
            lambda e: (
                e.get("task_name") == task_id_or_name
                or task_id_or_name in json.dumps(e.get("dead_letter", ""))
            )
        )


def new_id() -> str:
    return uuid.uuid4().hex[:16]


@pytest.fixture(scope="session")
def issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer() as local_issuer:
        yield local_issuer


def start_worker(
    tmp: Path, issuer: LocalIssuer | None, env: Mapping[str, str] | None = None
) -> Worker:
    record_file = tmp / f"records-{new_id()}.jsonl"
    worker_env = {
        "TASKS_EXTRA_MODULES": FIXTURE_MODULE,
        "TASKS_TEST_RECORD_FILE": str(record_file),
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        **(env or {}),
    }
    if issuer is None:
        process = WorkerProcess(worker_env)
    else:
        process = WorkerProcess.with_auth(issuer, env=worker_env)
    return Worker(process=process, record_file=record_file, issuer=issuer)


@pytest.fixture(scope="module")
def worker(issuer: LocalIssuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One worker with the token check on, shared by a test module."""
    running = start_worker(tmp_path_factory.mktemp("worker"), issuer)
    try:
        yield running
    finally:
        running.process.stop()
