"""The `enrich` example: a slow backend behind a timeout, mapped onto retry decisions."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.service.conftest import Worker, app_worker
from tests.service.support import LocalIssuer

# In-process (no worker process): not marked integration, so `make test-fast` runs it.

TIMEOUT_S = 0.3


class Backend(BaseHTTPRequestHandler):
    """Answers /records/{id} according to the id."""

    def do_GET(self) -> None:
        record_id = self.path.rsplit("/", 1)[-1]
        if record_id == "slow":
            time.sleep(TIMEOUT_S * 10)
        if record_id == "drop":
            self.close_connection = True
            self.connection.close()
            return
        status, body, headers = {
            "missing": (404, b'{"error": "not found"}', {}),
            "boom": (500, b"oops", {"Retry-After": "7"}),
            "limited": (429, b"slow down", {}),
            "forbidden": (403, b"no", {}),
            "html": (200, b"<html>maintenance</html>", {}),
        }.get(record_id, (200, json.dumps({"id": record_id, "score": 42}).encode(), {}))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def backend_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def enrich_worker(
    issuer: LocalIssuer, backend_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    env = {"ENRICH_BACKEND_URL": backend_url, "ENRICH_BACKEND_TIMEOUT_S": str(TIMEOUT_S)}
    with app_worker(tmp_path_factory.mktemp("enrich"), issuer, env) as worker:
        yield worker


def test_record_is_returned(enrich_worker: Worker) -> None:
    response = enrich_worker.post("enrich", {"record_id": "r1"})
    assert response.status_code == 200
    assert response.json()["result"] == {"record_id": "r1", "record": {"id": "r1", "score": 42}}


def test_timeout_is_transient_with_backoff(enrich_worker: Worker) -> None:
    response = enrich_worker.post(
        "enrich", {"record_id": "slow"}, headers={"X-CloudTasks-TaskName": "slow-1"}
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    entry = enrich_worker.wait_for_log(
        lambda e: e.get("task_name") == "slow-1" and e.get("outcome") == "retry"
    )
    assert f"timed out after {TIMEOUT_S:g} s" in entry["reason"], "the timeout was not applied"


def test_backend_5xx_is_transient_and_passes_its_retry_after(enrich_worker: Worker) -> None:
    response = enrich_worker.post("enrich", {"record_id": "boom"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"


def test_backend_429_is_transient(enrich_worker: Worker) -> None:
    assert enrich_worker.post("enrich", {"record_id": "limited"}).status_code == 503


def test_dropped_connection_is_transient(enrich_worker: Worker) -> None:
    assert enrich_worker.post("enrich", {"record_id": "drop"}).status_code == 503


@pytest.mark.parametrize("record_id", ["missing", "forbidden", "html"])
def test_backend_refusals_are_dead_letters(enrich_worker: Worker, record_id: str) -> None:
    response = enrich_worker.post("enrich", {"record_id": record_id})
    assert response.status_code == 200
    assert response.json()["status"] == "dead_letter"


def test_invalid_record_id_is_a_dead_letter(enrich_worker: Worker) -> None:
    response = enrich_worker.post("enrich", {"record_id": "../etc/passwd"})
    assert response.status_code == 200
    assert "record_id: String should match pattern" in response.json()["reason"]


def test_missing_backend_configuration_is_retried(
    issuer: LocalIssuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ENRICH_BACKEND_URL", raising=False)
    with app_worker(tmp_path, issuer) as worker:
        response = worker.post("enrich", {"record_id": "r1"})
        assert response.status_code == 500
        entry = worker.wait_for_log(lambda e: e.get("outcome") == "retry")
        assert "ENRICH_BACKEND_URL is not set" in entry["reason"]
