"""SIGTERM as Cloud Run sends it: in-flight tasks finish, new ones get 503.

These need the real `python -m service` process (signals, uvicorn's shutdown,
the exit code); everything else about the worker is tested in-process.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import ProcessWorker, new_id, start_worker
from tests.service.support import LocalIssuer

pytestmark = pytest.mark.integration


def _wait_started(worker: ProcessWorker, task_id: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not worker.runs(task_id):
        assert time.monotonic() < deadline, "the slow task never started"
        time.sleep(0.02)


def _deliver_in_background(
    worker: ProcessWorker, task_id: str, sleep_s: float
) -> tuple[threading.Thread, dict[str, object]]:
    result: dict[str, object] = {}

    def deliver() -> None:
        try:
            result["response"] = worker.post(
                "record", {"id": task_id, "sleep_s": sleep_s}, timeout=20
            )
        except httpx.HTTPError as exc:
            result["error"] = exc

    thread = threading.Thread(target=deliver)
    thread.start()
    return thread, result


def test_sigterm_lets_the_running_task_finish_and_refuses_new_ones(
    issuer: LocalIssuer, tmp_path: Path
) -> None:
    worker = start_worker(tmp_path, issuer)
    try:
        slow_id = new_id()
        thread, result = _deliver_in_background(worker, slow_id, sleep_s=1.5)
        _wait_started(worker, slow_id)

        worker.process.terminate()
        worker.process.wait_for_log(lambda e: e["message"].startswith("SIGTERM: draining"))

        refused_id = new_id()
        refused = worker.post("record", {"id": refused_id})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["connection"] == "close"
        assert worker.request("GET", "/healthz").status_code == 503

        thread.join(10)
        response = result["response"]
        assert isinstance(response, httpx.Response)
        assert response.status_code == 200
        assert len(worker.runs(slow_id, "end")) == 1
        assert worker.runs(refused_id) == []
        assert worker.process.wait(10) == 0
        drained = worker.process.entries(lambda e: e["message"] == "drained, shutting down")
        assert len(drained) == 1
        # It waited for the task, and stopped when it finished, not at the 8 s grace.
        assert drained[0]["drain_s"] > 0
        assert not worker.process.entries(lambda e: "exceeded" in e["message"])
        # Everything the process printed, uvicorn's lines included, is one JSON entry.
        assert len(worker.process.logs) == len(worker.process.raw_lines)
        assert all("severity" in e and "message" in e for e in worker.process.logs)
    finally:
        worker.process.stop()


def test_sigterm_when_idle_exits_at_once(issuer: LocalIssuer, tmp_path: Path) -> None:
    worker = start_worker(tmp_path, issuer)
    try:
        worker.process.terminate()
        assert worker.process.wait(10) == 0
        # Nothing in flight: drained at once, not after the grace.
        assert worker.process.entries(lambda e: e["message"] == "drained, shutting down")
        assert not worker.process.entries(lambda e: "exceeded" in e["message"])
    finally:
        worker.process.stop()


def test_task_outliving_the_grace_is_cut_off_unacknowledged(
    issuer: LocalIssuer, tmp_path: Path
) -> None:
    worker = start_worker(tmp_path, issuer, {"TASKS_SHUTDOWN_GRACE_S": "0.5"})
    try:
        slow_id = new_id()
        thread, result = _deliver_in_background(worker, slow_id, sleep_s=20)
        _wait_started(worker, slow_id)
        worker.process.terminate()
        # Grace 0.5 s + uvicorn's final 1 s, long before the task's 20 s.
        assert worker.process.wait(10) == 0
        thread.join(10)
        response = result.get("response")
        # No 2xx ever reached the caller, so Cloud Tasks retries the task.
        assert not (isinstance(response, httpx.Response) and response.is_success)
        assert worker.runs(slow_id, "end") == []
        assert worker.process.entries(
            lambda e: "grace" in e["message"] and "exceeded" in e["message"]
        )
        [cancelled] = worker.process.entries(lambda e: e.get("outcome") == "cancelled")
        assert cancelled["severity"] == "ERROR"
        assert cancelled["task_type"] == "record"
    finally:
        worker.process.stop()


def test_a_handler_thread_past_its_timeout_does_not_hold_the_exit(
    issuer: LocalIssuer, tmp_path: Path
) -> None:
    worker = start_worker(tmp_path, issuer)
    try:
        task_id = new_id()
        response = worker.post("bounded_sync", {"id": task_id, "sleep_s": 20})
        assert response.status_code == 503  # timed out; its thread sleeps on
        worker.process.terminate()
        # Nothing in flight, so no grace to wait out; the 20 s thread does not hold the exit.
        assert worker.process.wait(10) == 0
        assert worker.process.entries(lambda e: "handler thread(s) still running" in e["message"])
        assert worker.runs(task_id, "end") == []
    finally:
        worker.process.stop()
