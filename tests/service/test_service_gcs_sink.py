"""`service.gcs_dead_letters`: the record, its name, and create-only writes.

The record and name are pure; the writes go through the official client over HTTP:
to `gcp-storage-emulator` for the normal path, and to a tiny local server that
answers the upload as Cloud Storage answers a create-only write of an existing
object (412), which the emulator does not model.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.api_core.exceptions import RetryError

from service.deadletter import DeadLetter
from service.gcs_dead_letters import GcsDeadLetterSink, dead_letter_record, object_name
from tests.service.asgi import LogCapture, capture_logs

WHEN = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def letter(**changes: object) -> DeadLetter:
    fields: dict[str, object] = {
        "task_type": "email",
        "reason": "final attempt (3 of 3): backend down",
        "body": b'{"to": "a@b.c"}',
        "headers": {
            "x-cloudtasks-taskretrycount": "2",
            "x-cloudtasks-taskexecutioncount": "0",
            "x-cloudtasks-taskpreviousresponse": "503",
            "x-cloudtasks-tasketa": "1893553445.5",
            "content-type": "application/json",
        },
        "task_name": "t-123",
        "queue_name": "jobs-abc",
        "kind": "final_attempt",
        "queue_key": "default",
        "last_status": 503,
        "retry_policy": {"max_attempts": 3},
    }
    fields.update(changes)
    return DeadLetter(**fields)  # type: ignore[arg-type]


def test_the_record_holds_the_task_and_its_attempts() -> None:
    record = dead_letter_record(letter(), recorded_at=WHEN)
    assert record["body"] == '{"to": "a@b.c"}'
    assert (record["body_encoding"], record["body_bytes"]) == ("utf-8", 15)
    assert record["queue"] == {"key": "default", "id": "jobs-abc"}
    assert record["attempts"]["made"] == 3
    assert record["attempts"]["statuses"] == [
        {"attempt": 2, "status": 503},
        {"attempt": 3, "status": 503},
    ]
    assert record["last_error"] == "final attempt (3 of 3): backend down"
    assert record["recorded_at"] == "2030-01-02T03:04:05+00:00"
    json.dumps(record)  # plain JSON


def test_a_binary_body_is_base64_and_never_cut() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB, not UTF-8
    record = dead_letter_record(letter(body=body), recorded_at=WHEN)
    assert record["body_encoding"] == "base64"
    assert base64.b64decode(record["body"]) == body


def test_names_are_deterministic_and_safe() -> None:
    assert object_name(letter()) == "jobs-abc/t-123.json"
    assert object_name(letter()) == object_name(letter(reason="another error"))
    odd = object_name(letter(task_name="../../etc", queue_name=None))
    assert odd.startswith("_no-queue/_h-")
    assert ".." not in odd
    unnamed = object_name(letter(task_name=None))
    assert unnamed == object_name(letter(task_name=None))
    assert unnamed != object_name(letter(task_name=None, body=b"{}"))


class _Answer412(BaseHTTPRequestHandler):
    """Cloud Storage's answer to ifGenerationMatch=0 when the object exists."""

    uploads: list[str] = []  # noqa: RUF012 (a test recorder)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        type(self).uploads.append(self.path)
        body = json.dumps({"error": {"code": 412, "message": "conditionNotMet"}}).encode()
        self.send_response(412)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answers_412(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer412)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{server.server_port}")
    _Answer412.uploads = []
    try:
        yield _Answer412.uploads
    finally:
        server.shutdown()
        server.server_close()


def test_an_existing_record_counts_as_written(answers_412: list[str]) -> None:
    sink = GcsDeadLetterSink("dl-bucket", project="p")
    with capture_logs() as logs:
        asyncio.run(sink.record(letter()))
    [upload] = answers_412
    assert "ifGenerationMatch=0" in upload  # create-only: objectCreator cannot replace
    [line] = logs.entries(lambda e: "dead_letter_uri" in e)
    assert line["dead_letter_uri"] == "gs://dl-bucket/jobs-abc/t-123.json"
    assert line["message"].startswith("dead letter already stored")


def test_an_unreachable_bucket_raises_soon_so_the_task_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # discard port: closed
    sink = GcsDeadLetterSink("dl-bucket", project="p")
    started = time.monotonic()
    with pytest.raises(RetryError, match=r"Timeout of 8\.0s exceeded"):
        asyncio.run(sink.record(letter()))
    # Within the shortest dispatch deadline (15 s), not the client's default 120 s.
    assert time.monotonic() - started < 15


_ = LogCapture  # the fixture type the helpers return
