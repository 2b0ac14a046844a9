"""``python -m enqueue`` against the real emulator: output, exit codes, bulk files."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.cloud import tasks_v2

from emulator.testing import EmulatorProcess
from enqueue import StackOutputs, task_id_for_key
from enqueue.cli import main
from tests.enqueue.conftest import make_queue, task_names, write_outputs

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_emulator_env")]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    code = main(argv, out=out)
    return code, out.getvalue(), capsys.readouterr().err


@pytest.fixture
def setup(emulator: EmulatorProcess, tmp_path: Path) -> tuple[str, str]:
    queue = make_queue(emulator, paused=True)
    path = write_outputs(tmp_path / "outputs.json", emulator, queue, "https://worker.example.test")
    return str(path), queue


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_send_prints_the_name_then_already_enqueued(
    emulator: EmulatorProcess,
    setup: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
    transport: str,
) -> None:
    outputs, queue = setup
    argv = ["--outputs", outputs, "--transport", transport, "send", "email", "--data", '{"a": 1}']
    argv += ["--key", "order-7", "--delay", "60", "--deadline", "30", "--header", "X-Trace: t1"]
    name = f"{queue}/tasks/{task_id_for_key('email', 'order-7')}"
    assert run(argv, capsys) == (0, name + "\n", "")
    assert run(argv, capsys) == (0, f"already enqueued: {name}\n", "")
    code, out, err = run([*argv, "--fail-if-exists"], capsys)
    assert (code, out) == (3, "")
    assert err.startswith("error: already enqueued: " + name)
    assert task_names(emulator, queue) == [name]
    # BASIC, the default view, leaves the body out, as Cloud Tasks does.
    full = tasks_v2.GetTaskRequest(name=name, response_view=tasks_v2.Task.View.FULL)
    task = emulator.client().get_task(request=full)
    assert dict(task.http_request.headers)["X-Trace"] == "t1"
    assert json.loads(task.http_request.body) == {"a": 1}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["send", "a/b"], "error: type: 'a/b' is not a valid task type"),
        (["send", "a", "--name", "has space"], "error: name: 'has space' contains characters"),
        (["send", "a", "--name", "x" * 501], "error: name: must be 1..500 characters, got 501"),
        (["send", "a", "--delay", "2592001"], "error: delay: 2592001 s is outside 0..2592000 s"),
        (["send", "a", "--delay", "2592000.5"], "error: delay: 2592000.5 s is outside 0..2592000"),
        (["send", "a", "--delay", "inf"], "'inf' is not a finite number of seconds"),
        (["--retry-deadline", "nan", "send", "a"], "'nan' is not a finite number of seconds"),
        (["--retry-deadline", "inf", "send", "a"], "'inf' is not a finite number of seconds"),
        (["--retry-deadline=-inf", "send", "a"], "'-inf' is not a finite number of seconds"),
        (["send", "a", "--at", "2999-01-01T00:00:00Z"], "error: schedule_time: 2999-01-01"),
        (["send", "a", "--at", "tomorrow"], "error: --at 'tomorrow' is not an RFC 3339 time"),
        (["send", "a", "--deadline", "10"], "error: deadline: 10 s is outside 15..1800 s"),
        (["send", "a", "--deadline", "1801"], "error: deadline: 1801 s is outside 15..1800 s"),
        (["send", "a", "--data", "{bad"], "error: --data is not valid JSON"),
        (["send", "a", "--data", json.dumps("x" * 1_100_000)], "over the 1048576-byte (1 MiB)"),
        (
            ["send", "a", "--header", "X-Big:" + "v" * 80_000],
            "error: headers: 80033 bytes of headers",
        ),
        (
            ["send", "a", "--header", "Authorization: Bearer x"],
            "Authorization is replaced by the task's OIDC token: remove it",
        ),
        (
            ["send", "a", "--header", "novalue"],
            "error: --header 'novalue' must look like Name:value",
        ),
        (["send", "a", "--name", "n", "--key", "k"], "not allowed with argument --name"),
        (["send", "a", "--delay", "soon"], "cannot read 'soon' as a duration; write it like 30s"),
    ],
)
def test_send_validation_errors(
    emulator: EmulatorProcess,
    setup: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    outputs, queue = setup
    code, out, err = run(["--outputs", outputs, *args], capsys)
    assert code == 2
    assert out == ""
    assert message in err
    assert err.count("\n") == 1, "one line, no traceback"
    assert task_names(emulator, queue) == []


def test_large_payload_warns_but_is_sent(
    emulator: EmulatorProcess, setup: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    outputs, queue = setup
    code, out, err = run(
        ["--outputs", outputs, "send", "a", "--data", json.dumps("x" * 200_000)], capsys
    )
    assert code == 0
    assert out.startswith(queue + "/tasks/")
    assert err.startswith("warning: task ")
    assert "over the 100000-byte limit" in err
    assert err.count("\n") == 1


def test_outputs_problems_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["--outputs", str(tmp_path / "none.json"), "send", "a"], capsys)
    assert code == 2
    assert err.startswith("error: outputs file")
    assert "does not exist" in err
    (tmp_path / "partial.json").write_text('{"project": "p"}')
    code, _, err = run(["--outputs", str(tmp_path / "partial.json"), "send", "a"], capsys)
    assert code == 2
    assert "missing output(s) location, queue, service_url, audience, invoker_email" in err


def test_bulk_file_with_bad_lines_and_refeed(
    emulator: EmulatorProcess,
    setup: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outputs, queue = setup
    lines = [json.dumps({"type": "bulk", "data": {"i": i}, "key": f"k{i}"}) for i in range(50)]
    lines[3] = "{not json"
    lines[7] = json.dumps({"type": "bulk", "dely": 5})
    lines[9] = json.dumps({"type": "bulk", "deadline": 5, "key": "fixable"})
    lines[11] = json.dumps({"type": "bulk", "name": "bad name!"})
    lines.insert(20, "")  # a blank line is no task and no failure
    source = tmp_path / "tasks.jsonl"
    source.write_bytes("\n".join(lines).encode() + b"\n" + b'{"type": "\xff"}\n')

    code, out, _ = run(["--outputs", outputs, "bulk", str(source), "--concurrency", "8"], capsys)
    assert code == 1
    assert out.startswith("created 46, already enqueued 0, failed 5 (of 51 in ")
    assert "failed: line 4: not valid JSON" in out
    assert "failed: line 8: dely: unknown field(s) dely" in out
    assert "failed: line 10: deadline: 5 s is outside 15..1800 s" in out
    assert "failed: line 12: name: 'bad name!' contains characters" in out
    assert "failed: line 52: not valid UTF-8" in out
    failures = tmp_path / "tasks.failures.jsonl"
    assert f"failures written to {failures}" in out
    records = [json.loads(line) for line in failures.read_text().splitlines()]
    assert sorted(r["_failure"]["line"] for r in records) == [4, 8, 10, 12, 52]
    assert len(task_names(emulator, queue)) == 46

    # Fix the fixable line in place and feed the failures file back.
    fixed = []
    for record in records:
        if record.get("key") == "fixable":
            record["deadline"] = 60
        fixed.append(json.dumps(record))
    failures.write_text("\n".join(fixed) + "\n")
    code, out, _ = run(
        ["--outputs", outputs, "bulk", str(failures), "--failures", str(tmp_path / "again.jsonl")],
        capsys,
    )
    assert code == 1
    assert out.startswith("created 1, already enqueued 0, failed 4 (of 5 in ")
    assert len((tmp_path / "again.jsonl").read_text().splitlines()) == 4
    assert len(task_names(emulator, queue)) == 47

    # The whole file again: everything named is already there, nothing doubles.
    code, out, _ = run(
        ["--outputs", outputs, "bulk", str(source), "--failures", str(tmp_path / "third.jsonl")],
        capsys,
    )
    assert out.startswith("created 0, already enqueued 46, failed 5")
    assert len(task_names(emulator, queue)) == 47


def test_bulk_refuses_to_overwrite_its_input(
    setup: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs, _ = setup
    source = tmp_path / "t.jsonl"
    source.write_text('{"type": "a"}\n')
    code, _, err = run(
        ["--outputs", outputs, "bulk", str(source), "--failures", str(source)], capsys
    )
    assert code == 2
    assert "is the input file" in err


def test_emulator_host_env_wins(emulator: EmulatorProcess, tmp_path: Path) -> None:
    queue = make_queue(emulator, paused=True)
    data = json.loads(
        write_outputs(tmp_path / "o.json", emulator, queue, "http://127.0.0.1:9").read_text()
    )
    data["emulator_host"] = "127.0.0.1:1"  # nothing listens there
    from enqueue import Enqueuer

    outputs = StackOutputs.from_mapping(data)
    with Enqueuer(outputs, env={"CLOUD_TASKS_EMULATOR_HOST": emulator.grpc_host}) as enqueuer:
        name = enqueuer.send("ping", name="via-env")
    assert task_names(emulator, queue) == [name]


def test_module_entry_point(setup: tuple[str, str]) -> None:
    outputs, queue = setup
    done = subprocess.run(
        [sys.executable, "-m", "enqueue", "--outputs", outputs, "send", "smoke", "--name", "cli-1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{queue}/tasks/cli-1\n", "")
    bad = subprocess.run(
        [sys.executable, "-m", "enqueue", "--outputs", outputs, "send", "smoke", "--deadline", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert bad.returncode == 2
    assert bad.stderr == (
        "error: deadline: 1 s is outside 15..1800 s, the dispatch deadline Cloud Tasks "
        "allows for HTTP targets: pick a value in that range\n"
    )


def test_bulk_from_stdin(emulator: EmulatorProcess, setup: tuple[str, str], tmp_path: Path) -> None:
    outputs, queue = setup
    lines = "".join(json.dumps({"type": "stdin", "data": {"i": i}}) + "\n" for i in range(3))
    done = subprocess.run(
        [sys.executable, "-m", "enqueue", "--outputs", outputs, "bulk", "-", "--no-progress"],
        input=lines + "not json\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,  # the default failures file for stdin lands in the working directory
        env={**os.environ, "CLOUD_TASKS_EMULATOR_HOST": "", "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 1
    assert done.stdout.startswith("created 3, already enqueued 0, failed 1 (of 4 in ")
    assert "failed: line 4: not valid JSON" in done.stdout
    assert done.stderr == ""
    assert len(task_names(emulator, queue)) == 3
    failures = tmp_path / "enqueue-failures.jsonl"
    assert json.loads(failures.read_text())["_failure"]["raw"] == "not json"


def test_outputs_file_that_is_not_utf8_is_one_line(
    emulator: EmulatorProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = make_queue(emulator, paused=True)
    good = write_outputs(tmp_path / "o.json", emulator, queue, "https://worker.example.test")
    utf16 = tmp_path / "utf16.json"
    # What Windows PowerShell's `pulumi stack output --json > FILE` writes.
    utf16.write_bytes(good.read_text().encode("utf-16"))
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(b'{"project": "\xff"}')
    utf16_what = "is UTF-16, not UTF-8 (Windows PowerShell's > writes UTF-16)"
    for path, what in ((utf16, utf16_what), (latin1, "is not valid UTF-8 (byte 14)")):
        code, out, err = run(["--outputs", str(path), "send", "a"], capsys)
        assert (code, out) == (2, "")
        assert err.startswith(f"error: outputs file {path} {what}: it must be UTF-8 JSON")
        assert err.count("\n") == 1, "one line, no traceback"
    # A UTF-8 byte order mark (Windows tools write one) is fine.
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + good.read_bytes())
    code, out, err = run(["--outputs", str(bom), "send", "a", "--name", "bom-ok"], capsys)
    assert (code, out, err) == (0, f"{queue}/tasks/bom-ok\n", "")
    assert task_names(emulator, queue) == [f"{queue}/tasks/bom-ok"]


def test_data_file_that_is_not_utf8_is_one_line(
    emulator: EmulatorProcess,
    setup: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outputs, queue = setup
    files = {
        "latin1": (b'"\xff"', "is not valid UTF-8 (byte 2)"),
        "utf16": (
            '{"a": 1}'.encode("utf-16"),
            "is UTF-16, not UTF-8 (Windows PowerShell's > writes UTF-16)",
        ),
    }
    for stem, (content, what) in files.items():
        path = tmp_path / f"{stem}.json"
        path.write_bytes(content)
        code, out, err = run(["--outputs", outputs, "send", "a", "--data-file", str(path)], capsys)
        assert (code, out) == (2, "")
        assert err == (
            f"error: --data-file {path} {what}: the payload must be UTF-8 JSON; "
            "save the file as UTF-8\n"
        )
    bom = tmp_path / "bom.json"
    bom.write_bytes(b'\xef\xbb\xbf{"a": 1}')
    code, out, _ = run(
        ["--outputs", outputs, "send", "a", "--data-file", str(bom), "--name", "d"], capsys
    )
    assert (code, out) == (0, f"{queue}/tasks/d\n")
    assert task_names(emulator, queue) == [f"{queue}/tasks/d"]


def test_bulk_refuses_an_unwritable_failures_file_before_sending(
    emulator: EmulatorProcess,
    setup: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outputs, queue = setup
    source = tmp_path / "t.jsonl"
    source.write_text('{"type": "a", "name": "u-1"}\n{bad\n{"type": "a", "name": "u-2"}\n')
    missing_dir = tmp_path / "no-such-dir" / "f.jsonl"
    code, out, err = run(
        ["--outputs", outputs, "bulk", str(source), "--failures", str(missing_dir)], capsys
    )
    assert (code, out) == (2, "")
    assert err == (
        f"error: cannot write the failures file {missing_dir}: No such file or directory: "
        "pass --failures with a writable path\n"
    )
    # The default path, next to the input, taken by a directory (as unwritable as a
    # read-only directory, and testable as root).
    (tmp_path / "t.failures.jsonl").mkdir()
    code, out, err = run(["--outputs", outputs, "bulk", str(source)], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"error: cannot write the failures file {tmp_path / 't.failures.jsonl'}")
    assert err.count("\n") == 1
    assert task_names(emulator, queue) == []


def test_bulk_failures_file_is_created_only_when_something_fails(
    emulator: EmulatorProcess,
    setup: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outputs, queue = setup
    good = tmp_path / "good.jsonl"
    good.write_text('{"type": "a", "name": "c-1"}\n')
    code, _, _ = run(["--outputs", outputs, "bulk", str(good)], capsys)
    assert code == 0
    assert not (tmp_path / "good.failures.jsonl").exists()
    # An earlier failures file is replaced by the first failure, not appended to.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "a", "name": "c-2"}\nnot json\n')
    (tmp_path / "bad.failures.jsonl").write_text('{"old": "content"}\n' * 3)
    code, _, _ = run(["--outputs", outputs, "bulk", str(bad)], capsys)
    assert code == 1
    [record] = [json.loads(line) for line in (tmp_path / "bad.failures.jsonl").open()]
    assert record["_failure"]["raw"] == "not json"
    assert len(task_names(emulator, queue)) == 2


def test_bulk_refeeding_an_empty_object_reports_the_real_reason(
    emulator: EmulatorProcess,
    setup: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outputs, queue = setup
    source = tmp_path / "e.jsonl"
    source.write_text("{}\n[1, 2]\n")
    reason = "type: missing: every line needs the task type"
    code, out, _ = run(["--outputs", outputs, "bulk", str(source)], capsys)
    assert code == 1
    assert f"failed: line 1: {reason}" in out
    failures = tmp_path / "e.failures.jsonl"
    again = tmp_path / "again.jsonl"
    code, out, _ = run(
        ["--outputs", outputs, "bulk", str(failures), "--failures", str(again)], capsys
    )
    assert code == 1
    assert f"failed: line 1: {reason}\n" in out
    assert (
        "failed: line 2: carried over from an earlier run whose line was not a task object "
        "(line: expected a JSON object"
    ) in out
    # Fed back once more, the carried-over reason stays the first run's, not nested.
    code, out, _ = run(
        ["--outputs", outputs, "bulk", str(again), "--failures", str(tmp_path / "3.jsonl")], capsys
    )
    assert out.count("carried over") == 1
    assert f"failed: line 1: {reason}\n" in out
    assert task_names(emulator, queue) == []


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "redirected"])
def test_bulk_draws_its_bar_only_on_a_terminal(
    setup: tuple[str, str], tmp_path: Path, terminal: bool
) -> None:
    outputs, _ = setup
    source = tmp_path / "tasks.jsonl"
    source.write_text(
        "".join(json.dumps({"type": "bar", "data": {"i": i}}) + "\n" for i in range(5))
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TTY_COMPATIBLE", "FORCE_COLOR")}
    if terminal:
        env["TTY_COMPATIBLE"] = "1"  # rich's switch for "stderr is a terminal"
    done = subprocess.run(
        [sys.executable, "-m", "enqueue", "--outputs", outputs, "bulk", str(source)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("created 5, already enqueued 0, failed 0 (of 5 in ")
    if terminal:
        assert "5/5" in done.stderr  # the total was counted, and every outcome advanced it
        assert "0 failed" in done.stderr
    else:
        assert done.stderr == ""
