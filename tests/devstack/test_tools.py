"""`logs`, `exec`, `reset`, `export` and `import`, run as a user runs them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.logs import parse, render
from tests.devstack.stack_helpers import REPO_ROOT, LocalStack

WORKER_LINE = (
    '{"severity":"ERROR","message":"dead letter: x task abc: unknown task type",'
    '"time":"2026-12-04T16:16:09.771688+00:00","task_type":"x","task_name":"abc"}'
)


class TestLogLines:
    def test_a_worker_line_is_one_readable_line(self) -> None:
        line = parse("worker", WORKER_LINE)
        assert render(line).plain == (
            "16:16:09.771 worker   ERROR    x/abc dead letter: x task abc: unknown task type"
        )

    def test_errors_are_red_and_plain_lines_stay_as_they_are(self) -> None:
        styles = {str(span.style) for span in render(parse("worker", WORKER_LINE)).spans}
        assert "bold red" in styles
        plain = parse("emulator", "cloud-tasks-emulator ready grpc=127.0.0.1:1 http=x\n")
        assert render(plain).plain == "emulator cloud-tasks-emulator ready grpc=127.0.0.1:1 http=x"

    @pytest.mark.parametrize(
        ("task", "matches"),
        [("abc", True), ("projects/p/locations/l/queues/q/tasks/abc", True), ("ab", False)],
    )
    def test_a_task_is_found_by_id_or_full_name(self, task: str, matches: bool) -> None:
        assert parse("worker", WORKER_LINE).mentions(task) is matches


def _send(stack: LocalStack, *args: str) -> str:
    outputs = str(stack.paths.outputs_file)
    done = subprocess.run(
        [sys.executable, "-m", "enqueue", "--outputs", outputs, "send", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.integration
def test_logs_of_one_task(local_stack: LocalStack) -> None:
    local_stack.start()
    wanted = _send(local_stack, "smoke", "--data", '{"n": 1}').rsplit("/", 1)[1]
    other = _send(local_stack, "smoke", "--data", '{"n": 2}').rsplit("/", 1)[1]
    deadline = time.monotonic() + 20
    while other not in local_stack.paths.worker_log.read_text():
        assert time.monotonic() < deadline, "the tasks were not delivered"
        time.sleep(0.1)
    shown = local_stack.cli("logs", "--task", wanted)
    assert shown.returncode == 0, shown.stderr
    assert f"smoke/{wanted} task smoke ok: 200" in shown.stdout
    assert other not in shown.stdout


@pytest.mark.integration
def test_exec_runs_a_command_against_the_stack_and_exits_with_its_status(
    local_stack: LocalStack,
) -> None:
    script = (
        "import json, os, sys; "
        "out = json.load(open(os.environ['DEVSTACK_OUTPUTS'])); "
        "assert out['emulator_host'] == os.environ['CLOUD_TASKS_EMULATOR_HOST']; "
        "sys.exit(7)"
    )
    done = local_stack.cli("exec", "--", sys.executable, "-c", script)
    assert done.returncode == 7, done.stderr
    assert "is up" in done.stderr
    assert not local_stack.paths.state_file.exists(), "exec must take the stack down"


@pytest.mark.integration
def test_export_reset_import_round_trip(local_stack: LocalStack, tmp_path: Path) -> None:
    local_stack.start()
    # Due in an hour: still queued when exported.
    name = _send(local_stack, "smoke", "--delay", "1h")
    export = tmp_path / "start.db"
    exported = local_stack.cli("export", str(export))
    assert exported.returncode == 0, exported.stderr
    assert "1 task(s)" in exported.stdout

    refused = local_stack.cli("reset")
    assert refused.returncode == 1
    assert "is up" in refused.stderr
    assert local_stack.cli("down").returncode == 0
    assert local_stack.cli("reset").returncode == 0
    assert not local_stack.paths.emulator_data.exists()

    imported = local_stack.cli("import", str(export))
    assert imported.returncode == 0, imported.stderr
    local_stack.start()
    listed = local_stack.cli("status")
    assert "depth 1" in listed.stdout, listed.stdout
    assert name.rsplit("/", 1)[1] in export.read_bytes().decode("latin-1")


def test_import_refuses_a_file_that_is_not_an_export(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("not a database")
    refused = local_stack.cli("import", str(junk))
    assert refused.returncode == 1
    assert "not an SQLite database" in refused.stderr
    assert not local_stack.paths.emulator_data.exists()


def test_exec_without_a_command_says_how(local_stack: LocalStack) -> None:
    done = local_stack.cli("exec")
    assert done.returncode == 2
    assert "exec -- COMMAND" in done.stderr
