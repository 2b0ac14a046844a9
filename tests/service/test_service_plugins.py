"""Dead-letter sinks and idempotency stores plugged in by import path."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from service import TaskRegistry
from service.app import create_app
from service.config import ConfigError, Settings
from service.plugins import load_object
from tests.service.conftest import FIXTURE_MODULE, AppWorker, app_worker, new_id
from tests.service.fixtures_tasks import EMPTY_STORE
from tests.service.support import LocalIssuer, iter_json_lines

# In-process (no worker process): not marked integration, so `make test-fast` runs it.


def _headers(name: str) -> dict[str, str]:
    return {"X-CloudTasks-TaskName": name, "X-CloudTasks-QueueName": "jobs"}


@contextlib.contextmanager
def _start(
    issuer: LocalIssuer, tmp_path: Path, sink: str, store: str
) -> Iterator[tuple[AppWorker, Path]]:
    """An app whose environment names the sink and store, as a deployment's would."""
    plugin_file = tmp_path / "plugins.jsonl"
    env = {
        "TASKS_DEAD_LETTER_SINK": f"{FIXTURE_MODULE}:{sink}",
        "TASKS_IDEMPOTENCY_STORE": f"{FIXTURE_MODULE}:{store}",
        "TASKS_TEST_PLUGIN_FILE": str(plugin_file),
    }
    with app_worker(tmp_path, issuer, env) as worker:
        yield worker, plugin_file


def test_sink_gets_the_letter_without_credentials_and_store_sees_every_step(
    issuer: LocalIssuer, tmp_path: Path
) -> None:
    with _start(issuer, tmp_path, "FileSink", "RecordingStore") as (worker, plugin_file):
        name = new_id()
        first = worker.post(
            "fail_permanent", {"id": name, "message": "gone"}, headers=_headers(name)
        )
        again = worker.post("fail_permanent", {"id": name}, headers=_headers(name))
        assert first.json()["status"] == "dead_letter"
        assert again.json()["status"] == "duplicate"
        entries = list(iter_json_lines(plugin_file))
        [letter] = [e for e in entries if e.get("sink") == "letter"]
        assert letter["task_name"] == name
        assert letter["reason"] == "gone"
        assert '"message": "gone"' in letter["body"]
        assert letter["headers"]["x-cloudtasks-queuename"] == "jobs"
        assert "authorization" not in letter["headers"]
        steps = [(e["store"], e.get("state") or e.get("outcome")) for e in entries if "store" in e]
        assert steps == [("claim", "claimed"), ("complete", "dead_letter"), ("claim", "done")]


def test_failing_sink_and_store_make_cloud_tasks_retry(issuer: LocalIssuer, tmp_path: Path) -> None:
    with _start(issuer, tmp_path, "BrokenSink", "BrokenStore") as (worker, _):
        name = new_id()
        # The store cannot claim: answering 2xx could run the handler twice later.
        claimed = worker.post("record", {"id": name}, headers=_headers(name))
        assert claimed.status_code == 503
        assert claimed.headers["retry-after"] == "10"
        assert worker.runs(name) == []
        # The sink cannot keep the letter: a retry is better than losing it.
        task_id = new_id()
        letter = worker.post("fail_permanent", {"id": task_id})
        assert letter.status_code == 503
        entry = worker.wait_for_log(
            lambda e: e.get("outcome") == "retry" and "sink" in e.get("reason", "")
        )
        assert "ConnectionError: sink backend down" in entry["stack_trace"]


def test_plugin_specs_are_checked() -> None:
    with pytest.raises(ConfigError, match="cannot import 'no_such_module'"):
        load_object("no_such_module:Sink", "TASKS_DEAD_LETTER_SINK")
    with pytest.raises(ConfigError, match="has no 'Nope'"):
        load_object(f"{FIXTURE_MODULE}:Nope", "TASKS_DEAD_LETTER_SINK")
    sink = load_object(f"{FIXTURE_MODULE}:FileSink", "TASKS_DEAD_LETTER_SINK")
    assert type(sink).__name__ == "FileSink"


def test_an_empty_store_from_the_environment_is_the_one_used() -> None:
    # InMemoryIdempotencyStore has __len__: empty, it is falsy, and must still be used.
    settings = Settings.from_env(
        {"HOST": "127.0.0.1", "TASKS_IDEMPOTENCY_STORE": f"{FIXTURE_MODULE}:EMPTY_STORE"}
    )
    assert create_app(settings, task_registry=TaskRegistry()).state.store is EMPTY_STORE
