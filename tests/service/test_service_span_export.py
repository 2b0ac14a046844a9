"""The worker's own spans, exported over OTLP/HTTP (service.span_export) to a real local
collector: one span per attempt, a child of the producer's span, with the attempt's log
lines under it; the SIGTERM shutdown sends the last batch."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from contract.names import WORKER_ENV_TRACE_EXPORT
from service.config import ConfigError, Settings
from tests.service.conftest import new_id, start_worker
from tests.service.support import LocalIssuer

pytestmark = pytest.mark.integration

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER_SPAN = "00f067aa0ba902b7"


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP receiver on loopback: keeps every span it is sent."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.paths.append(self.path)
                collector.requests.append(ExportTraceServiceRequest.FromString(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    def spans(self) -> list[object]:
        return [
            span
            for request in self.requests
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_each_attempt_is_a_span_under_the_producers(
    issuer: LocalIssuer, tmp_path: Path, collector: Collector
) -> None:
    url = f"http://127.0.0.1:{collector.server_address[1]}"
    worker = start_worker(tmp_path, issuer, {WORKER_ENV_TRACE_EXPORT: url})
    name = new_id()
    headers = {
        "X-CloudTasks-TaskName": name,
        "X-CloudTasks-QueueName": "jobs",
        "X-CloudTasks-TaskRetryCount": "2",
        "traceparent": f"00-{TRACE}-{PRODUCER_SPAN}-01",
    }
    try:
        assert worker.post("record", {"id": name}, headers=headers).status_code == 200
        line = worker.wait_for_log(lambda e: e.get("task_name") == name and "outcome" in e)
    finally:
        worker.process.stop()  # SIGTERM: the last batch is sent before the worker exits
    [span] = [s for s in collector.spans() if s.name == "task record"]  # type: ignore[attr-defined]
    assert collector.paths == ["/v1/traces"] * len(collector.paths)
    assert span.trace_id.hex() == TRACE  # type: ignore[attr-defined]
    assert span.parent_span_id.hex() == PRODUCER_SPAN  # type: ignore[attr-defined]
    attributes = {a.key: a.value for a in span.attributes}  # type: ignore[attr-defined]
    assert attributes["cloud_tasks.task_name"].string_value == name
    assert attributes["cloud_tasks.retry_count"].int_value == 2
    assert attributes["http.response.status_code"].int_value == 200
    # The attempt's log lines carry its own span, so Cloud Logging nests them under it.
    assert line["logging.googleapis.com/spanId"] == span.span_id.hex()  # type: ignore[attr-defined]
    assert line["logging.googleapis.com/trace"].endswith(f"/traces/{TRACE}")


@pytest.mark.parametrize(
    "value", ["http://collector.example.com", "ftp://127.0.0.1", "https://x.example.com/v1/traces"]
)
def test_only_https_or_a_loopback_collector_is_accepted(value: str) -> None:
    with pytest.raises(ConfigError, match="TASKS_TRACE_EXPORT="):
        Settings.from_env(
            {"HOST": "127.0.0.1", "TASKS_AUTH_DISABLED": "true", WORKER_ENV_TRACE_EXPORT: value}
        )
