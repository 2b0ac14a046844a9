"""The smoke test's own logic: hints, attempt reading, the privacy check, bad input.

The full pass and the 403 failure against a running stack are in
tests/devstack/test_local_stack.py.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.cloud import tasks_v2
from google.protobuf import timestamp_pb2
from google.rpc import status_pb2

from contract.names import SMOKE_TASK_TYPE, TASK_ROUTE_PREFIX
from enqueue import StackOutputs
from scripts import smoke_test

OUTPUTS = {
    "project": "p",
    "location": "europe-west1",
    "queue": "projects/p/locations/europe-west1/queues/q",
    "service_url": "http://127.0.0.1:9",
    "audience": "https://worker-1.europe-west1.run.app",
    "invoker_email": "invoker@p.iam.gserviceaccount.com",
}


def _outputs(**overrides: str) -> StackOutputs:
    return StackOutputs.from_mapping({**OUTPUTS, **overrides})


class TestHints:
    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            (401, "audience"),
            (403, "roles/run.invoker"),
            (404, "route"),
            (500, "worker.log"),
            (503, "worker.log"),
        ],
    )
    def test_each_failing_status_points_at_its_usual_cause(
        self, status: int, expected: str
    ) -> None:
        hint = smoke_test.hint_for(status, _outputs(), "/x/worker.log")
        assert hint.startswith(str(status))
        assert expected in hint

    def test_403_names_the_invoker(self) -> None:
        assert "invoker@p.iam.gserviceaccount.com" in smoke_test.hint_for(403, _outputs(), "")


class TestAttemptView:
    def _task(self, code: int, message: str) -> tasks_v2.Task:
        now = timestamp_pb2.Timestamp(seconds=1_800_000_000)
        attempt = tasks_v2.Attempt(
            response_time=now, response_status=status_pb2.Status(code=code, message=message)
        )
        return tasks_v2.Task(dispatch_count=2, response_count=2, last_attempt=attempt)

    def test_http_status_in_the_message_wins(self) -> None:
        view = smoke_test.attempt_view(self._task(7, "HTTP 403 Forbidden"))
        assert view.http_status == 403
        assert view.failed

    def test_grpc_code_maps_back_to_http(self) -> None:
        assert smoke_test.attempt_view(self._task(16, "denied")).http_status == 401
        assert smoke_test.attempt_view(self._task(5, "")).http_status == 404
        assert smoke_test.attempt_view(self._task(14, "")).http_status == 503

    def test_first_attempt_time_is_read(self) -> None:
        task = self._task(7, "HTTP 403")
        task.first_attempt = tasks_v2.Attempt(
            dispatch_time=timestamp_pb2.Timestamp(seconds=1_800_000_000)
        )
        first = smoke_test.attempt_view(task).first_attempt
        assert first is not None
        assert first.timestamp() == 1_800_000_000

    def test_no_response_yet_is_not_a_failure(self) -> None:
        view = smoke_test.attempt_view(tasks_v2.Task(dispatch_count=1))
        assert view.http_status is None
        assert not view.failed
        assert "no response yet" in view.describe()


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 401

    def do_POST(self) -> None:
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


class TestPrivacy:
    @pytest.mark.parametrize("status", [401, 403, 404])
    def test_refusals_pass(self, http_server: tuple[str, type[_Handler]], status: int) -> None:
        url, handler = http_server
        handler.status = status
        assert smoke_test.check_privacy(_outputs(service_url=url), timeout=5) == status

    def test_a_public_worker_fails(self, http_server: tuple[str, type[_Handler]]) -> None:
        url, handler = http_server
        handler.status = 200
        with pytest.raises(smoke_test.SmokeFailure, match="WITHOUT a token"):
            smoke_test.check_privacy(_outputs(service_url=url), timeout=5)

    def test_an_unreachable_worker_fails_with_the_url(self) -> None:
        outputs = _outputs(service_url="http://127.0.0.1:9")
        with pytest.raises(smoke_test.SmokeFailure) as info:
            smoke_test.check_privacy(outputs, timeout=2)
        assert f"127.0.0.1:9{TASK_ROUTE_PREFIX}{SMOKE_TASK_TYPE}" in str(info.value)


class TestCommandLine:
    def test_missing_outputs_file_exits_2_with_the_fix(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = smoke_test.main(["--outputs", str(tmp_path / "none.json")])
        assert code == 2
        err = capsys.readouterr().err
        assert "none.json" in err
        assert "devstack up" in err

    def test_incomplete_outputs_exit_2_naming_the_key(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "outputs.json"
        path.write_text(json.dumps({k: v for k, v in OUTPUTS.items() if k != "audience"}))
        assert smoke_test.main(["--outputs", str(path)]) == 2
        assert "audience" in capsys.readouterr().err

    def test_source_is_required(self) -> None:
        with pytest.raises(SystemExit) as info:
            smoke_test.main([])
        assert info.value.code == 2

    def test_unreachable_worker_fails_with_one_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "outputs.json"
        path.write_text(json.dumps(OUTPUTS))
        assert smoke_test.main(["--outputs", str(path), "--timeout", "2"]) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[-1].startswith("SMOKE TEST FAILED: cannot reach")


class TestRetriesLeft:
    """A task gone after a failure passes only if the queue cannot have given up yet."""

    NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    def _retry(self, attempts: int, duration_s: int) -> tasks_v2.RetryConfig:
        return tasks_v2.RetryConfig(
            max_attempts=attempts, max_retry_duration=timedelta(seconds=duration_s)
        )

    def test_unlimited_attempts_never_give_up(self) -> None:
        assert smoke_test.retries_left(self._retry(-1, 0), None, self.NOW)

    def test_within_the_retry_duration_the_queue_cannot_have_given_up(self) -> None:
        first = self.NOW - timedelta(seconds=30)
        assert smoke_test.retries_left(self._retry(5, 600), first, self.NOW)

    def test_after_the_retry_duration_it_may_have(self) -> None:
        first = self.NOW - timedelta(seconds=601)
        assert not smoke_test.retries_left(self._retry(5, 600), first, self.NOW)

    def test_without_a_duration_limit_or_first_attempt_it_cannot_tell(self) -> None:
        assert not smoke_test.retries_left(self._retry(5, 0), self.NOW, self.NOW)
        assert not smoke_test.retries_left(self._retry(5, 600), None, self.NOW)
