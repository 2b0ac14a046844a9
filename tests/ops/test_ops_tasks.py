"""`python -m ops tasks ...` and `queue ...` against the real emulator."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import pytest
from google.cloud import tasks_v2

from emulator.testing import EmulatorProcess
from enqueue import Enqueuer, StackOutputs, task_id_for_key
from ops.cli import main
from tests.ops.conftest import Stack, make_stack

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_env")]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    code = main(argv, out=out)
    return code, out.getvalue(), capsys.readouterr().err


@pytest.fixture
def stack(emulator: EmulatorProcess, tmp_path: Path) -> Stack:
    return make_stack(emulator, tmp_path)


def enqueue(stack: Stack, task_type: str, **kwargs: object) -> str:
    with Enqueuer(StackOutputs.from_file(stack.outputs)) as enqueuer:
        return enqueuer.send(task_type, **kwargs)


def test_list_decodes_bodies_in_every_queue(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    json_task = enqueue(stack, "send-email", data={"to": "a@b.c"}, key="k1")
    raw = bytes(range(256))
    raw_task = enqueue(stack, "resize", body=raw, name="raw-1")
    code, out, err = run(["--outputs", str(stack.outputs), "tasks", "list", "--json"], capsys)
    assert (code, err) == (0, "")
    views = {view["name"]: view for view in json.loads(out)}
    assert set(views) == {json_task, raw_task}
    assert views[json_task]["queue"] == "email"  # send-email's route
    assert views[json_task]["body"] == {"to": "a@b.c"}
    assert views[json_task]["body_encoding"] == "json"
    assert views[raw_task]["queue"] == "default"
    assert base64.b64decode(views[raw_task]["body"]) == raw
    assert views[raw_task]["body_encoding"] == "base64"
    assert views[raw_task]["dispatch_count"] == 0
    assert views[raw_task]["last_attempt"] is None
    # One queue, and the human form prints the body pretty.
    code, out, _ = run(
        ["--outputs", str(stack.outputs), "tasks", "list", "--queue", "email"], capsys
    )
    assert code == 0
    assert json_task.rsplit("/", 1)[1] in out
    assert "raw-1" not in out
    assert '    {\n      "to": "a@b.c"\n    }' in out
    assert out.endswith("1 task(s)\n")


def test_list_limit_and_unknown_queue(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    for n in range(3):
        enqueue(stack, "resize", data={"n": n})
    code, out, _ = run(
        ["--outputs", str(stack.outputs), "tasks", "list", "--limit", "2", "--json"], capsys
    )
    assert code == 0
    assert len(json.loads(out)) == 2
    code, out, err = run(
        ["--outputs", str(stack.outputs), "tasks", "list", "--queue", "nope"], capsys
    )
    assert (code, out) == (2, "")
    assert err.startswith(
        "error: queue: 'nope' is not a queue of this stack (its queues: default, email)"
    )
    assert err.count("\n") == 1


def test_attempt_history_of_a_failing_task(
    emulator: EmulatorProcess,
    tmp_path: Path,
    failing_worker: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = make_stack(emulator, tmp_path, service_url=failing_worker, paused=False)
    name = enqueue(stack, "resize", data={"n": 1}, name="fails")
    deadline = time.monotonic() + 20
    while True:
        [task] = stack.tasks("default")
        if task.response_count >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    code, out, _ = run(["--outputs", str(stack.outputs), "tasks", "show", "fails"], capsys)
    assert code == 0
    view = json.loads(out)
    assert view["name"] == name
    assert view["dispatch_count"] >= 1
    assert view["response_count"] >= 1
    assert view["first_attempt"]["dispatch_time"] is not None
    # 503 from the worker is UNAVAILABLE (14) in the attempt's status, as Cloud Tasks reports.
    assert view["last_attempt"]["response_status"]["code"] == 14
    assert view["schedule_time"] is not None


def test_show_by_full_name_and_a_missing_task(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    name = enqueue(stack, "send-email", data={"x": 1}, name="one")
    code, out, _ = run(["--outputs", str(stack.outputs), "tasks", "show", name], capsys)
    assert code == 0
    assert json.loads(out)["body"] == {"x": 1}
    code, out, err = run(["--outputs", str(stack.outputs), "tasks", "show", "gone"], capsys)
    assert (code, out) == (3, "")
    assert err.startswith("error: no task gone in the stack's queues (default, email)")
    code, _, err = run(["--outputs", str(stack.outputs), "tasks", "show", "a/b"], capsys)
    assert code == 2
    assert "looks like a path" in err


def test_cancel_by_name_and_by_idempotency_key(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    by_name = enqueue(stack, "resize", data={}, name="cancel-me")
    by_key = enqueue(stack, "send-email", data={}, key="order-7")
    assert by_key.endswith(task_id_for_key("send-email", "order-7"))
    argv = ["--outputs", str(stack.outputs), "tasks", "cancel"]
    assert run([*argv, "cancel-me"], capsys) == (0, f"cancelled {by_name}\n", "")
    assert run([*argv, "--type", "send-email", "--key", "order-7"], capsys) == (
        0,
        f"cancelled {by_key}\n",
        "",
    )
    assert stack.tasks("default") == []
    assert stack.tasks("email") == []
    code, _, err = run([*argv, "cancel-me"], capsys)
    assert code == 3
    assert err.startswith("error: no task cancel-me")
    code, _, err = run([*argv, "x", "--type", "t", "--key", "k"], capsys)
    assert code == 2
    assert "one of the two" in err
    code, _, err = run([*argv, "--type", "t"], capsys)
    assert code == 2
    assert "go together" in err
    code, _, err = run(argv, capsys)
    assert code == 2
    assert "one of the two" in err


def _state(stack: Stack, key: str) -> tasks_v2.Queue.State:
    state: tasks_v2.Queue.State = stack.emulator.client().get_queue(name=stack.queues[key]).state
    return state


def test_pause_resume(
    emulator: EmulatorProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = make_stack(emulator, tmp_path, paused=False)
    argv = ["--outputs", str(stack.outputs), "queue"]
    code, out, _ = run([*argv, "pause", "email"], capsys)
    assert code == 0
    assert out == f"paused email ({stack.queues['email']}): state PAUSED\n"
    assert _state(stack, "email") == tasks_v2.Queue.State.PAUSED
    assert _state(stack, "default") == tasks_v2.Queue.State.RUNNING
    code, out, _ = run([*argv, "resume", "email"], capsys)
    assert code == 0
    assert out.endswith("state RUNNING\n")
    assert _state(stack, "email") == tasks_v2.Queue.State.RUNNING


def test_purge_needs_yes_without_a_terminal(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue(stack, "resize", data={}, name="keep-1")
    monkeypatch.setattr("sys.stdin", io.StringIO("default\n"))  # not a terminal
    argv = ["--outputs", str(stack.outputs), "queue", "purge", "default"]
    code, out, err = run(argv, capsys)
    assert (code, out) == (2, "")
    assert err.startswith("error: queue purge default deletes every task")
    assert "--yes" in err
    assert len(stack.tasks("default")) == 1  # nothing done
    code, out, _ = run([*argv, "--yes"], capsys)
    assert code == 0
    assert out.startswith("purged default")
    assert stack.tasks("default") == []


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_purge_asks_on_a_terminal(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue(stack, "send-email", data={}, name="keep-2")
    argv = ["--outputs", str(stack.outputs), "queue", "purge", "email"]
    monkeypatch.setattr("sys.stdin", _Terminal("no\n"))
    code, _, err = run(argv, capsys)
    assert code == 2
    assert "not confirmed" in err
    assert len(stack.tasks("email")) == 1
    monkeypatch.setattr("sys.stdin", _Terminal("email\n"))
    code, _out, err = run(argv, capsys)
    assert code == 0
    assert "Type the queue key (email) to confirm" in err
    assert stack.tasks("email") == []


def test_rest_transport_gives_the_same_view(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    enqueue(stack, "send-email", data={"v": [1, 2]}, name="same")
    views = []
    for transport in ("grpc", "rest"):
        argv = ["--outputs", str(stack.outputs), "--transport", transport, "tasks", "show", "same"]
        code, out, _ = run(argv, capsys)
        assert code == 0
        views.append(json.loads(out))
    assert views[0] == views[1]
    assert views[0]["body"] == {"v": [1, 2]}


def test_an_unreachable_api_is_one_line_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], emulator: EmulatorProcess
) -> None:
    stack = make_stack(emulator, tmp_path)
    data = json.loads(stack.outputs.read_text())
    data["emulator_host"] = "127.0.0.1:9"  # discard port: closed
    stack.outputs.write_text(json.dumps(data))
    code, out, err = run(["--outputs", str(stack.outputs), "queue", "pause", "default"], capsys)
    assert (code, out) == (1, "")
    assert err.startswith("error: could not pause queue")
    assert err.count("\n") == 1
