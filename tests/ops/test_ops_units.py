"""The pieces of `python -m ops` that need no server: outputs, headers, records, bodies."""

from __future__ import annotations

import base64
import json
import warnings
from pathlib import Path

import pytest

from enqueue import StackOutputs
from enqueue.errors import OutputsError
from ops.bodies import decoded_body
from ops.cli import main
from ops.dead_letters import BadRecordError, dead_letter_id, parse_record
from ops.replay import replay_headers
from tests.ops.conftest import dead_letter_record

BASE = {
    "project": "p",
    "location": "l",
    "queue": "projects/p/locations/l/queues/q",
    "service_url": "https://worker.example",
    "audience": "https://worker.example",
    "invoker_email": "invoker@p.iam.gserviceaccount.com",
}


def test_outputs_carry_the_dead_letter_keys_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "unknown output" warning
        outputs = StackOutputs.from_mapping(
            {**BASE, "dead_letter_bucket": "b", "storage_emulator_host": "http://127.0.0.1:9023"}
        )
    assert (outputs.dead_letter_bucket, outputs.storage_emulator_host) == (
        "b",
        "http://127.0.0.1:9023",
    )
    assert StackOutputs.from_mapping(BASE).dead_letter_bucket is None


def test_a_bad_storage_emulator_url_is_refused_naming_the_output() -> None:
    with pytest.raises(OutputsError, match="output storage_emulator_host must be an http"):
        StackOutputs.from_mapping({**BASE, "storage_emulator_host": "127.0.0.1:9023"})


def test_replay_keeps_the_tasks_own_headers_only() -> None:
    stored = dead_letter_record(
        task_type="t", body=b"{}", queue_key="default", queue_id="q", task_id="a"
    )["headers"]
    stored |= {"x-tenant": "acme", "x-forwarded-for": "10.0.0.1", "host": "w.example"}
    assert replay_headers(stored) == {"content-type": "application/json", "x-tenant": "acme"}


def test_bodies_json_else_base64() -> None:
    assert decoded_body(b'{"a": [1]}') == ({"a": [1]}, "json")
    assert decoded_body(b"\xff\x00") == (base64.b64encode(b"\xff\x00").decode(), "base64")
    assert decoded_body(b"plain text") == (base64.b64encode(b"plain text").decode(), "base64")
    assert decoded_body(b"") == (None, "empty")


def test_ids_from_names_and_uris() -> None:
    assert dead_letter_id("q/t.json") == "q/t"
    assert dead_letter_id("gs://bucket/q/t.json") == "q/t"
    assert dead_letter_id("q/t") == "q/t"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"format": 2}, "record format 2"),
        ({"body_encoding": "gzip"}, "unknown body_encoding"),
        ({"body": "!!!", "body_encoding": "base64"}, "not valid base64"),
        ({"task_type": ""}, "no task_type"),
        ({"headers": {"a": 1}}, "headers must be an object of strings"),
    ],
)
def test_damaged_records_say_what_is_wrong(change: dict[str, object], words: str) -> None:
    record = dead_letter_record(
        task_type="t", body=b"{}", queue_key="default", queue_id="q", task_id="a"
    )
    with pytest.raises(BadRecordError, match=words):
        parse_record("q/a.json", json.dumps({**record, **change}).encode())
    with pytest.raises(BadRecordError, match="not JSON"):
        parse_record("q/a.json", b"{not json")


def test_an_interrupt_is_one_line_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*_: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr("ops.cli._queue", interrupted)
    assert main(["--outputs", "o.json", "queue", "pause", "default"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("error: interrupted")
    assert err.count("\n") == 1


def test_a_bad_type_for_cancel_by_key_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "o.json"
    outputs.write_text(json.dumps({**BASE, "emulator_host": "127.0.0.1:9"}))
    argv = ["--outputs", str(outputs), "tasks", "cancel", "--type", "no/slash", "--key", "k"]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("error: --type: ")
    # An unknown queue key is refused before any client or credentials are needed.
    assert main(["--outputs", str(outputs), "queue", "purge", "nope", "--yes"]) == 2
    assert "'nope' is not a queue of this stack" in capsys.readouterr().err
