"""`python -m ops dead-letters ...`: records written as the worker writes them into the
registry's gcp-storage-emulator, read with google-cloud-storage, replayed into the
real Cloud Tasks emulator."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import pytest

from emulator.testing import EmulatorProcess
from ops.cli import main
from ops.replay import replay_task_id
from tests.enqueue.conftest import Target
from tests.ops.conftest import (
    Stack,
    dead_letter_object_name,
    dead_letter_record,
    make_stack,
    write_dead_letter,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_env")]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    code = main(argv, out=out)
    return code, out.getvalue(), capsys.readouterr().err


@pytest.fixture
def stack(emulator: EmulatorProcess, tmp_path: Path, storage_url: str, bucket: str) -> Stack:
    # Paused queues: replayed tasks stay there to be counted.
    extra = {"dead_letter_bucket": bucket, "storage_emulator_host": storage_url}
    return make_stack(emulator, tmp_path, extra=extra)


def queue_id(stack: Stack, key: str) -> str:
    return stack.queues[key].rsplit("/", 1)[1]


def letter(
    stack: Stack, storage_url: str, bucket: str, key: str, task_type: str, task_id: str, body: bytes
) -> str:
    """Write one dead letter; returns its id."""
    name = dead_letter_object_name(queue_id(stack, key), task_id)
    record = dead_letter_record(
        task_type=task_type,
        body=body,
        queue_key=key,
        queue_id=queue_id(stack, key),
        task_id=task_id,
        headers={"x-tenant": "acme"},
    )
    write_dead_letter(storage_url, bucket, name, record)
    return name.removesuffix(".json")


@pytest.fixture
def letters(stack: Stack, storage_url: str, bucket: str) -> dict[str, str]:
    big = json.dumps({"blob": "x" * 900_000}).encode()  # whole, far over a log entry
    return {
        "email": letter(
            stack, storage_url, bucket, "email", "send-email", "t-1", b'{"to":"a@b.c"}'
        ),
        "big": letter(stack, storage_url, bucket, "default", "resize", "t-2", big),
        "binary": letter(stack, storage_url, bucket, "default", "resize", "t-3", bytes(range(256))),
    }


def test_list_and_filters(
    stack: Stack, letters: dict[str, str], bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--outputs", str(stack.outputs), "dead-letters", "list"]
    code, out, err = run([*base, "--json"], capsys)
    assert (code, err) == (0, "")
    listed = {s["id"]: s for s in json.loads(out)}
    assert set(listed) == set(letters.values())
    assert listed[letters["email"]]["task_type"] == "send-email"
    assert listed[letters["email"]]["attempts"] == 3
    assert listed[letters["big"]]["body_bytes"] > 900_000
    code, out, _ = run([*base, "--queue", "email", "--json"], capsys)
    assert [s["id"] for s in json.loads(out)] == [letters["email"]]
    code, out, _ = run([*base, "--type", "resize", "--json"], capsys)
    assert sorted(s["id"] for s in json.loads(out)) == sorted([letters["big"], letters["binary"]])
    code, out, _ = run(base, capsys)
    assert code == 0
    assert out.endswith(f"3 dead letter(s) in gs://{bucket}\n")


def test_show_decodes_the_whole_body(
    stack: Stack, letters: dict[str, str], bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--outputs", str(stack.outputs), "dead-letters", "show"]
    code, out, _ = run([*base, letters["big"]], capsys)
    shown = json.loads(out)
    assert code == 0
    assert shown["body"] == {"blob": "x" * 900_000}
    assert shown["uri"] == f"gs://{bucket}/{letters['big']}.json"
    assert shown["attempt_history"]["statuses"][-1] == {"attempt": 3, "status": 503}
    code, out, _ = run([*base, f"gs://{bucket}/{letters['binary']}.json"], capsys)
    shown = json.loads(out)
    assert (shown["body_encoding"], base64.b64decode(shown["body"])) == (
        "base64",
        bytes(range(256)),
    )
    code, out, err = run([*base, "nope/none"], capsys)
    assert (code, out) == (3, "")
    assert err.startswith(f"error: no dead letter nope/none in gs://{bucket}")


def test_replay_twice_makes_one_task_each(
    stack: Stack, letters: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--outputs", str(stack.outputs), "dead-letters", "replay"]
    code, out, err = run([*base, "--all"], capsys)
    assert code == 0
    assert out.endswith("replayed 3, already enqueued 0 (of 3)\n")
    # The 900 kB body is sent whole, with the helper's one-line size warning.
    assert err.startswith("warning: task replay-")
    assert err.count("\n") == 1
    code, out, _ = run([*base, "--all"], capsys)
    assert code == 0
    assert out.endswith("replayed 0, already enqueued 3 (of 3)\n")
    [email] = stack.tasks("email")
    assert email.name.endswith("/tasks/replay-" + email.name.rsplit("replay-", 1)[1])
    assert json.loads(email.http_request.body) == {"to": "a@b.c"}
    headers = dict(email.http_request.headers)
    assert headers["x-tenant"] == "acme"  # the task's own header comes back
    # The replay is a new task: its own X-Tasks-Not-Before (now), none of the old headers.
    assert "X-Tasks-Not-Before" in headers
    assert not any(
        h.lower().startswith(("x-cloudtasks-", "x-tasks-", "traceparent"))
        for h in headers
        if h != "X-Tasks-Not-Before"
    )
    assert email.http_request.url.endswith("/tasks/send-email")
    bodies = sorted(bytes(t.http_request.body) for t in stack.tasks("default"))
    assert bodies == sorted([json.dumps({"blob": "x" * 900_000}).encode(), bytes(range(256))])
    # One by id: the same derived name, so still one task.
    code, out, _ = run([*base, letters["email"]], capsys)
    assert code == 0
    assert out.startswith(f"already enqueued: {letters['email']} -> {email.name}")
    assert len(stack.tasks("email")) == 1


def test_dry_run_sends_nothing(
    stack: Stack, letters: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        [
            "--outputs",
            str(stack.outputs),
            "dead-letters",
            "replay",
            "--type",
            "send-email",
            "--dry-run",
        ],
        capsys,
    )
    assert code == 0
    [line, summary] = out.splitlines()
    would = json.loads(line)["would_send"]
    assert would["dead_letter"] == letters["email"]
    assert would["queue"] == "email"
    assert would["task"].endswith("/tasks/" + would["task"].rsplit("/", 1)[1])
    assert summary == "dry run: 1 dead letter(s) would be replayed, nothing sent"
    assert stack.tasks("email") == []
    assert stack.tasks("default") == []


def test_a_damaged_record_stops_the_replay_before_anything_is_sent(
    stack: Stack,
    letters: dict[str, str],
    storage_url: str,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    damaged = dead_letter_record(
        task_type="resize",
        body=b"{}",
        queue_key="default",
        queue_id=queue_id(stack, "default"),
        task_id="t-9",
    )
    damaged["body_bytes"] = 99  # a cut body is not a task to replay
    write_dead_letter(
        storage_url, bucket, dead_letter_object_name(queue_id(stack, "default"), "t-9"), damaged
    )
    code, out, err = run(
        ["--outputs", str(stack.outputs), "dead-letters", "replay", "--all"], capsys
    )
    assert (code, out) == (2, "")
    assert "the body has 2 bytes but the record says 99: nothing was replayed" in err
    assert stack.tasks("email") == []
    assert stack.tasks("default") == []
    # `list` still shows the others, and says which one it skipped.
    code, out, err = run(["--outputs", str(stack.outputs), "dead-letters", "list"], capsys)
    assert code == 0
    assert "3 dead letter(s)" in out
    assert "warning: skipped dead letter" in err


def test_a_header_the_api_refuses_stops_the_replay(
    stack: Stack,
    letters: dict[str, str],
    storage_url: str,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    record = dead_letter_record(
        task_type="bad type!",
        body=b"{}",
        queue_key="default",
        queue_id=queue_id(stack, "default"),
        task_id="t-8",
    )
    write_dead_letter(
        storage_url, bucket, dead_letter_object_name(queue_id(stack, "default"), "t-8"), record
    )
    code, _, err = run(["--outputs", str(stack.outputs), "dead-letters", "replay", "--all"], capsys)
    assert code == 2
    assert "cannot be replayed" in err
    assert err.count("\n") == 1
    assert stack.tasks("default") == []


def test_usage_errors(stack: Stack, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    base = ["--outputs", str(stack.outputs), "dead-letters", "replay"]
    for argv in ([], ["--all", "x/y"], ["--all", "--queue", "email"]):
        code, _, err = run([*base, *argv], capsys)
        assert code == 2
        assert "selects one way" in err
    without = json.loads(stack.outputs.read_text())
    del without["dead_letter_bucket"]
    path = tmp_path / "no-bucket.json"
    path.write_text(json.dumps(without))
    code, _, err = run(["--outputs", str(path), "dead-letters", "list"], capsys)
    assert code == 2
    assert err.startswith("error: the outputs have no dead_letter_bucket")


def test_replay_id_is_deterministic_per_object() -> None:
    from ops.dead_letters import parse_record

    record = dead_letter_record(
        task_type="t", body=b"{}", queue_key="default", queue_id="q", task_id="a"
    )
    one = parse_record("q/a.json", json.dumps(record).encode())
    other = parse_record("q/b.json", json.dumps(record).encode())
    assert replay_task_id(one) == replay_task_id(one)
    assert replay_task_id(one) != replay_task_id(other)
    assert replay_task_id(one).startswith("replay-")
    assert len(replay_task_id(one)) == 39


def test_a_replay_is_delivered_once_even_when_run_twice(
    emulator: EmulatorProcess,
    tmp_path: Path,
    storage_url: str,
    bucket: str,
    target: Target,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A running queue and a worker that answers 200: the replayed task runs and is
    # gone; the second replay finds its name still reserved and creates nothing.
    extra = {"dead_letter_bucket": bucket, "storage_emulator_host": storage_url}
    stack = make_stack(emulator, tmp_path, service_url=target.url, paused=False, extra=extra)
    letter_id = letter(stack, storage_url, bucket, "email", "send-email", "t-5", b'{"n": 5}')
    argv = ["--outputs", str(stack.outputs), "dead-letters", "replay", letter_id]
    code, out, _ = run(argv, capsys)
    assert code == 0
    assert out.startswith("replayed: ")
    [delivered] = target.wait_for(1)
    assert (delivered.path, delivered.body) == ("/tasks/send-email", b'{"n": 5}')
    assert delivered.headers["x-tenant"] == "acme"
    deadline = time.monotonic() + 10
    while stack.tasks("email") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stack.tasks("email") == []  # it ran
    code, out, _ = run(argv, capsys)
    assert code == 0
    assert out.startswith(f"already enqueued: {letter_id}")
    time.sleep(1.0)  # a second delivery, if one were coming, would arrive by now
    assert len(target.received) == 1


def test_storage_emulator_host_in_the_environment_wins(
    stack: Stack,
    letters: dict[str, str],
    storage_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = json.loads(stack.outputs.read_text())
    data["storage_emulator_host"] = "http://127.0.0.1:9"  # discard port: closed
    stack.outputs.write_text(json.dumps(data))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage_url)
    code, out, _ = run(["--outputs", str(stack.outputs), "dead-letters", "list", "--json"], capsys)
    assert code == 0
    assert len(json.loads(out)) == len(letters)


def test_an_unreachable_bucket_is_one_line_exit_1_soon(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(stack.outputs.read_text())
    data["storage_emulator_host"] = "http://127.0.0.1:9"  # discard port: closed
    stack.outputs.write_text(json.dumps(data))
    monkeypatch.setattr("ops.dead_letters.READ_RETRY_BUDGET_S", 1.0)
    started = time.monotonic()
    code, out, err = run(["--outputs", str(stack.outputs), "dead-letters", "list"], capsys)
    assert (code, out) == (1, "")
    assert err.startswith(f"error: Cloud Storage could not list gs://{data['dead_letter_bucket']}")
    assert err.count("\n") == 1
    assert time.monotonic() - started < 10
