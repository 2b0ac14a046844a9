"""Routing, payloads, status codes, idempotency, context and logs: the app in-process over HTTP."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import MutableMapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from contract.limits import MAX_TASK_BYTES
from service.app import create_app
from service.config import Settings
from tests.service.asgi import capture_logs
from tests.service.conftest import FIXTURE_MODULE, PROJECT, Worker, app_worker, new_id
from tests.service.support import LocalIssuer

# In-process (no worker process): not marked integration, so `make test-fast` runs it.


def _task_headers(name: str, **more: str) -> dict[str, str]:
    return {"X-CloudTasks-TaskName": name, "X-CloudTasks-QueueName": "jobs", **more}


def _dead_letter_entry(worker: Worker, marker: str) -> dict[str, Any]:
    return worker.wait_for_log(lambda e: "dead_letter" in e and marker in e["dead_letter"]["body"])


class TestSuccess:
    def test_handler_result_is_returned(self, worker: Worker) -> None:
        task_id = new_id()
        response = worker.post("record", {"id": task_id})
        assert response.status_code == 200
        assert response.json()["result"] == {"id": task_id}

    def test_plain_function_handler_runs_off_the_event_loop(self, worker: Worker) -> None:
        task_id = new_id()
        assert worker.post("record_sync", {"id": task_id}).status_code == 200
        [run] = worker.runs(task_id)
        assert run["thread"] != "MainThread"

    def test_builtin_smoke_echoes_its_nonce(self, worker: Worker) -> None:
        response = worker.post("smoke", {"nonce": "n-123", "sent_at": 5})
        assert response.status_code == 200
        result = response.json()["result"]
        assert result["pong"] is True
        assert result["nonce"] == "n-123"
        assert result["payload"] == {"nonce": "n-123", "delay_s": 0, "sent_at": 5}

    def test_smoke_can_hold_the_answer(self, worker: Worker) -> None:
        started = time.monotonic()
        response = worker.post("smoke", {"delay_s": 0.3})
        assert response.status_code == 200
        assert time.monotonic() - started >= 0.3
        assert worker.post("smoke", {"delay_s": 61}).json()["status"] == "dead_letter"

    def test_smoke_accepts_an_empty_body(self, worker: Worker) -> None:
        response = worker.post("smoke", raw=b"")
        assert response.status_code == 200
        assert response.json()["result"]["nonce"] is None

    def test_only_post_is_routed(self, worker: Worker) -> None:
        assert worker.request("GET", "/tasks/smoke").status_code == 405
        assert worker.request("POST", "/elsewhere").status_code == 404


class TestContext:
    def test_cloud_tasks_headers_reach_the_handler(self, worker: Worker) -> None:
        name = new_id()
        headers = _task_headers(
            name,
            **{
                "X-CloudTasks-TaskRetryCount": "3",
                "X-CloudTasks-TaskExecutionCount": "2",
                "X-CloudTasks-TaskETA": "1700000000.5",
                "X-CloudTasks-TaskPreviousResponse": "503",
                "X-CloudTasks-TaskRetryReason": "HTTP status code 503",
                "X-Cloud-Trace-Context": "0123456789ABCDEF0123456789abcdef/987;o=1",
                "User-Agent": "Google-Cloud-Tasks",
            },
        )
        assert worker.post("record", {"id": name}, headers=headers).status_code == 200
        [run] = worker.runs(name)
        assert run["task_name"] == name
        assert run["queue_name"] == "jobs"
        assert run["retry_count"] == 3
        assert run["execution_count"] == 2
        assert run["eta"] == pytest.approx(1700000000.5)
        assert run["previous_response"] == 503
        assert run["retry_reason"] == "HTTP status code 503"
        assert run["trace_id"] == "0123456789abcdef0123456789abcdef"
        assert run["span_id"] == f"{987:016x}"  # Cloud Logging's spanId: 16 hex digits
        assert run["sampled"] is True

    def test_malformed_informational_headers_become_none(self, worker: Worker) -> None:
        name = new_id()
        headers = _task_headers(
            name,
            **{
                "X-CloudTasks-TaskRetryCount": "three",
                "X-CloudTasks-TaskETA": "tomorrow",
                "X-Cloud-Trace-Context": "not-a-trace",
            },
        )
        assert worker.post("record", {"id": name}, headers=headers).status_code == 200
        [run] = worker.runs(name)
        assert run["retry_count"] is None
        assert run["eta"] is None
        assert run["trace_id"] is None

    def test_task_line_is_what_cloud_logging_reads(self, worker: Worker) -> None:
        name = new_id()
        trace = "fedcba9876543210fedcba9876543210"
        headers = _task_headers(name, **{"X-Cloud-Trace-Context": f"{trace}/42;o=0"})
        assert worker.post("record", {"id": name}, headers=headers).status_code == 200
        entry = worker.wait_for_log(lambda e: e.get("task_name") == name and "outcome" in e)
        assert entry["severity"] == "INFO"
        assert entry["message"] == "task record ok: 200"
        assert entry["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{trace}"
        assert entry["logging.googleapis.com/spanId"] == f"{42:016x}"
        assert entry["logging.googleapis.com/trace_sampled"] is False
        assert entry["task_type"] == "record"
        assert entry["queue_name"] == "jobs"
        assert entry["outcome"] == "ok"
        assert entry["status"] == 200
        assert isinstance(entry["latency_ms"], float)
        assert entry["latency_ms"] >= 0
        assert entry["invoker_email"].startswith("tasks-invoker@")


class TestMalformedPayloads:
    """One test per malformed payload: dead letter (200), handler never runs."""

    def _assert_dead_lettered(self, worker: Worker, raw: bytes, marker: str, why: str) -> None:
        name = new_id()
        response = worker.post("strict", raw=raw, headers=_task_headers(name))
        assert response.status_code == 200
        assert response.json()["status"] == "dead_letter"
        assert why in response.json()["reason"]
        assert worker.runs(marker) == []
        entry = worker.wait_for_log(
            lambda e: "dead_letter" in e and e["dead_letter"]["task_name"] == name
        )
        assert entry["severity"] == "ERROR"
        letter = entry["dead_letter"]
        assert letter["task_type"] == "strict"
        assert letter["queue_name"] == "jobs"
        # The exact bytes come back from the entry, so the task can be replayed.
        if letter["body_encoding"] == "base64":
            assert base64.b64decode(letter["body"]) == raw
        else:
            assert letter["body"].encode() == raw
        assert letter["headers"]["x-cloudtasks-taskname"] == name
        assert why in letter["reason"]

    def test_not_json(self, worker: Worker) -> None:
        self._assert_dead_lettered(worker, b"{id: nope", "nope", "Invalid JSON")

    def test_json_array_instead_of_object(self, worker: Worker) -> None:
        self._assert_dead_lettered(worker, b'["arr1", 1]', "arr1", "Input should be an object")

    def test_missing_required_field(self, worker: Worker) -> None:
        self._assert_dead_lettered(worker, b'{"id": "miss1"}', "miss1", "count: Field required")

    def test_wrong_type(self, worker: Worker) -> None:
        raw = b'{"id": "type1", "count": "many"}'
        self._assert_dead_lettered(worker, raw, "type1", "count: Input should be a valid integer")

    def test_out_of_range(self, worker: Worker) -> None:
        raw = b'{"id": "range1", "count": 11}'
        self._assert_dead_lettered(worker, raw, "range1", "less than or equal to 10")

    def test_unknown_field(self, worker: Worker) -> None:
        raw = b'{"id": "extra1", "count": 1, "colour": "red"}'
        self._assert_dead_lettered(worker, raw, "extra1", "colour: Extra inputs are not permitted")

    def test_empty_string_id(self, worker: Worker) -> None:
        self._assert_dead_lettered(worker, b'{"id": "", "count": 1}', "", "id: String should")

    def test_too_many_list_items(self, worker: Worker) -> None:
        raw = b'{"id": "list1", "count": 1, "tags": ["a","b","c","d","e","f"]}'
        self._assert_dead_lettered(worker, raw, "list1", "tags: List should have at most 5")

    def test_empty_body(self, worker: Worker) -> None:
        self._assert_dead_lettered(worker, b"", "", "id: Field required")

    def test_not_utf8(self, worker: Worker) -> None:
        self._assert_dead_lettered(worker, b'{"id": "\xff\xfe", "count": 1}', "\ufffd", "Invalid")

    def test_unknown_task_type_is_a_dead_letter(self, worker: Worker) -> None:
        name = new_id()
        response = worker.post("no-such-type", {"id": name}, headers=_task_headers(name))
        assert response.status_code == 200
        assert response.json()["status"] == "dead_letter"
        assert "unknown task type 'no-such-type'" in response.json()["reason"]
        entry = _dead_letter_entry(worker, name)
        assert entry["severity"] == "ERROR"
        assert entry["dead_letter"]["task_type"] == "no-such-type"

    def test_body_above_the_cloud_tasks_limit_is_413(self, worker: Worker) -> None:
        task_id = new_id()
        raw = b'{"id": "' + task_id.encode() + b'", "pad": "' + b"x" * MAX_TASK_BYTES + b'"}'
        response = worker.post("record", raw=raw)
        assert response.status_code == 413
        assert worker.runs(task_id) == []


class TestFailures:
    def test_transient_error_is_503_with_retry_after(self, worker: Worker) -> None:
        task_id = new_id()
        response = worker.post("fail_transient", {"id": task_id, "retry_after": 2.2})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "3"
        assert response.json() == {"status": "retry"}
        assert len(worker.runs(task_id)) == 1

    def test_transient_error_can_ask_for_429(self, worker: Worker) -> None:
        response = worker.post("fail_transient", {"id": new_id(), "status": 429, "retry_after": 7})
        assert response.status_code == 429
        assert response.headers["retry-after"] == "7"

    def test_transient_error_without_delay_has_no_retry_after(self, worker: Worker) -> None:
        response = worker.post("fail_transient", {"id": new_id()})
        assert response.status_code == 503
        assert "retry-after" not in response.headers

    def test_transient_message_is_logged_not_returned(self, worker: Worker) -> None:
        name = new_id()
        response = worker.post(
            "fail_transient",
            {"id": name, "message": "db-primary-7 refused"},
            headers=_task_headers(name),
        )
        assert "db-primary-7" not in response.text
        entry = worker.wait_for_log(lambda e: e.get("task_name") == name and "outcome" in e)
        assert entry["severity"] == "WARNING"
        assert entry["outcome"] == "retry"
        assert entry["reason"] == "db-primary-7 refused"

    def test_declared_timeout_abandons_the_run_and_asks_for_a_retry(self, worker: Worker) -> None:
        name = new_id()
        response = worker.post("bounded", {"id": name, "sleep_s": 5}, headers=_task_headers(name))
        assert response.status_code == 503
        assert len(worker.runs(name)) == 1
        assert worker.runs(name, "end") == []  # answered while the handler still slept
        entry = worker.wait_for_log(lambda e: e.get("task_name") == name and "outcome" in e)
        assert entry["reason"] == "handler exceeded its timeout of 0.3 s"
        # The key was released: the retry runs, and finishes in time.
        retry = worker.post("bounded", {"id": name}, headers=_task_headers(name))
        assert retry.status_code == 200
        assert len(worker.runs(name, "end")) == 1

    def test_a_plain_handler_past_its_timeout_never_runs_twice(self, worker: Worker) -> None:
        name = new_id()
        response = worker.post(
            "bounded_sync", {"id": name, "sleep_s": 1.5}, headers=_task_headers(name)
        )
        assert response.status_code == 503  # asked for a retry at the timeout
        # Its thread still runs: a retry now must not start a second run.
        early = worker.post("bounded_sync", {"id": name}, headers=_task_headers(name))
        assert early.status_code == 409
        worker.wait_for_log(
            lambda e: e.get("task_name") == name and "finished after its timeout" in e["message"]
        )
        # The late run succeeded: the retry is acknowledged without running again.
        late = worker.post("bounded_sync", {"id": name}, headers=_task_headers(name))
        assert (late.status_code, late.json()["status"]) == (200, "duplicate")
        assert len(worker.runs(name)) == 1
        assert len(worker.runs(name, "end")) == 1

    def test_a_misrouted_delivery_is_logged_with_its_task_headers(self, worker: Worker) -> None:
        name = new_id()
        response = worker.request("PUT", "/tasks/record", headers=_task_headers(name))
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        entry = worker.wait_for_log(
            lambda e: (
                e.get("outcome") == "no_route" and e["headers"].get("x-cloudtasks-taskname") == name
            )
        )
        assert entry["severity"] == "WARNING"
        assert entry["headers"]["x-cloudtasks-taskname"] == name
        assert "PUT /tasks/record" in entry["message"]

    def test_permanent_error_is_acknowledged_and_dead_lettered(self, worker: Worker) -> None:
        name = new_id()
        response = worker.post(
            "fail_permanent",
            {"id": name, "message": "record gone"},
            headers=_task_headers(name),
        )
        assert response.status_code == 200
        assert response.json() == {"status": "dead_letter", "reason": "record gone"}
        entry = _dead_letter_entry(worker, name)
        assert entry["severity"] == "ERROR"
        assert entry["dead_letter"]["reason"] == "record gone"
        assert entry["task_name"] == name

    def test_unexpected_exception_is_500_with_stack_trace(self, worker: Worker) -> None:
        name = new_id()
        response = worker.post(
            "crash", {"id": name, "message": "boom"}, headers=_task_headers(name)
        )
        assert response.status_code == 500
        assert response.json() == {"status": "error"}
        entry = worker.wait_for_log(lambda e: e.get("task_name") == name and "outcome" in e)
        assert entry["severity"] == "ERROR"
        assert "RuntimeError: boom" in entry["stack_trace"]


class TestIdempotency:
    def test_duplicate_delivery_does_not_run_the_handler_twice(self, worker: Worker) -> None:
        name = new_id()
        first = worker.post("record", {"id": name}, headers=_task_headers(name))
        second = worker.post(
            "record",
            {"id": name},
            headers=_task_headers(name, **{"X-CloudTasks-TaskRetryCount": "1"}),
        )
        assert first.status_code == 200
        assert second.status_code == 200
        assert second.json() == {"status": "duplicate", "previous_outcome": "ok"}
        assert len(worker.runs(name)) == 1

    def test_same_task_name_in_another_queue_is_another_task(self, worker: Worker) -> None:
        name = new_id()
        for queue in ("jobs", "other-jobs"):
            headers = {"X-CloudTasks-TaskName": name, "X-CloudTasks-QueueName": queue}
            assert worker.post("record", {"id": name}, headers=headers).status_code == 200
        assert len(worker.runs(name)) == 2

    def test_concurrent_duplicate_gets_409_and_never_runs(self, worker: Worker) -> None:
        name = new_id()
        results: dict[str, httpx.Response] = {}

        def deliver_slow() -> None:
            results["first"] = worker.post(
                "record", {"id": name, "sleep_s": 1.5}, headers=_task_headers(name)
            )

        thread = threading.Thread(target=deliver_slow)
        thread.start()
        deadline = time.monotonic() + 5
        while not worker.runs(name) and time.monotonic() < deadline:
            time.sleep(0.02)
        duplicate = worker.post("record", {"id": name}, headers=_task_headers(name))
        thread.join(10)
        assert duplicate.status_code == 409
        assert duplicate.headers["retry-after"] == "10"
        assert results["first"].status_code == 200
        # The retry after the first finished is acknowledged without running.
        later = worker.post("record", {"id": name}, headers=_task_headers(name))
        assert later.json()["status"] == "duplicate"
        assert len(worker.runs(name)) == 1
        assert len(worker.runs(name, "end")) == 1

    def test_transient_failure_lets_the_retry_run(self, worker: Worker) -> None:
        name = new_id()
        first = worker.post(
            "flaky",
            {"id": name},
            headers=_task_headers(name, **{"X-CloudTasks-TaskRetryCount": "0"}),
        )
        retry = worker.post(
            "flaky",
            {"id": name},
            headers=_task_headers(name, **{"X-CloudTasks-TaskRetryCount": "1"}),
        )
        assert first.status_code == 503
        assert retry.status_code == 200
        assert [r["retry_count"] for r in worker.runs(name)] == [0, 1]

    def test_dead_letter_is_recorded_once(self, worker: Worker) -> None:
        name = new_id()
        for _ in range(2):
            response = worker.post("fail_permanent", {"id": name}, headers=_task_headers(name))
            assert response.status_code == 200
        assert len(worker.runs(name)) == 1
        letters = worker.entries(
            lambda e: "dead_letter" in e and e["dead_letter"]["task_name"] == name
        )
        assert len(letters) == 1

    def test_deliveries_without_a_task_name_are_not_deduplicated(self, worker: Worker) -> None:
        task_id = new_id()
        for _ in range(2):
            assert worker.post("record", {"id": task_id}).status_code == 200
        assert len(worker.runs(task_id)) == 2


class MetadataServer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if (
            self.path == "/computeMetadata/v1/project/project-id"
            and self.headers.get("Metadata-Flavor") == "Google"
        ):
            body = b"meta-project"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_on_cloud_run_the_project_comes_from_the_metadata_server(
    issuer: LocalIssuer, tmp_path: Path
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), MetadataServer)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    env = {
        "GOOGLE_CLOUD_PROJECT": "",
        "K_SERVICE": "worker",
        "GCE_METADATA_HOST": f"127.0.0.1:{server.server_address[1]}",
    }
    try:
        with app_worker(tmp_path, issuer, env) as worker:
            name = new_id()
            trace = "00000000000000000000000000000abc"
            headers = _task_headers(name, **{"X-Cloud-Trace-Context": f"{trace}/1;o=1"})
            assert worker.post("record", {"id": name}, headers=headers).status_code == 200
            entry = worker.wait_for_log(lambda e: e.get("task_name") == name)
            assert entry["logging.googleapis.com/trace"] == f"projects/meta-project/traces/{trace}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_caller_gone_before_its_body_arrived_gets_400_and_nothing_runs(tmp_path: Path) -> None:
    """Driven at the ASGI level: httpx always sends the whole body, Cloud Run may not."""
    record_file = tmp_path / "records.jsonl"
    settings = Settings.from_env({"HOST": "127.0.0.1", "TASKS_EXTRA_MODULES": FIXTURE_MODULE})
    app = create_app(settings)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/tasks/record",
        "raw_path": b"/tasks/record",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"x-cloudtasks-taskname", b"gone-1")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    with capture_logs() as logs, pytest.MonkeyPatch.context() as patch:
        patch.setenv("TASKS_TEST_RECORD_FILE", str(record_file))
        asyncio.run(app(scope, receive, send))
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    assert start["status"] == 400
    assert b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body") == b""
    assert logs.entries(lambda e: "disconnected before sending" in e["message"])
    assert not record_file.exists()
