"""State files and process supervision, with real (trivial) child processes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contract.names import LOCAL_OUTPUT_KEYS
from devstack import processes
from devstack.state import (
    ProcessRecord,
    StackPaths,
    StackState,
    StateError,
    load_state,
    save_state,
    write_outputs,
)

SLEEPER = "import sys, time; print('sleeper ready', flush=True); time.sleep(60)"


class TestState:
    def test_bad_stack_name_says_what_is_allowed(self, tmp_path: Path) -> None:
        with pytest.raises(StateError, match="letters, digits"):
            StackPaths.for_stack("../etc", tmp_path)

    def test_state_round_trip(self, tmp_path: Path) -> None:
        paths = StackPaths.for_stack("dev", tmp_path)
        state = StackState(
            stack="dev", plan_source="x", started_at=1.5, ready_seconds=2.0, plan_seconds=0.5
        )
        state.no_local_effect.append({"type": "t", "name": "n", "verdict": "v", "detail": "d"})
        save_state(paths, state)
        assert load_state(paths) == state

    def test_corrupt_state_file_says_how_to_recover(self, tmp_path: Path) -> None:
        paths = StackPaths.for_stack("dev", tmp_path)
        paths.ensure()
        paths.state_file.write_text("{not json")
        with pytest.raises(StateError, match="delete the file"):
            load_state(paths)

    def test_outputs_file_has_exactly_the_local_keys(self, tmp_path: Path) -> None:
        paths = StackPaths.for_stack("dev", tmp_path)
        values = {key: f"value-{key}" for key in LOCAL_OUTPUT_KEYS}
        write_outputs(paths, {**values, "extra": "ignored"})
        assert json.loads(paths.outputs_file.read_text()) == values
        with pytest.raises(StateError, match="emulator_url"):
            write_outputs(paths, {k: v for k, v in values.items() if k != "emulator_url"})


@pytest.mark.integration
class TestProcesses:
    def _spawn(self, tmp_path: Path) -> processes.Started:
        return processes.spawn(
            "sleeper",
            [sys.executable, "-c", SLEEPER],
            env={"PATH": "/usr/bin:/bin"},
            log=tmp_path / "sleeper.log",
            cwd=tmp_path,
        )

    def test_ready_line_then_stop(self, tmp_path: Path) -> None:
        started = self._spawn(tmp_path)
        try:
            processes.wait_for_line(started, re.compile("sleeper ready"), timeout=30)
            assert processes.is_ours(started.record)
            message = processes.stop(started.record, child=started.process)
            assert "stopped" in message
            assert started.process.returncode is not None
            assert not processes.is_running(started.record.pid)
        finally:
            started.process.kill()
            started.process.wait()

    def test_a_child_stopped_right_after_spawn_is_stopped(self, tmp_path: Path) -> None:
        # Before the exec its command line is still ours: the Popen is the proof.
        started = self._spawn(tmp_path)
        try:
            assert "stopped" in processes.stop(started.record, child=started.process)
            assert started.process.returncode is not None
        finally:
            started.process.kill()
            started.process.wait()

    def test_a_recycled_pid_is_never_signalled(self, tmp_path: Path) -> None:
        started = self._spawn(tmp_path)
        try:
            processes.wait_for_line(started, re.compile("sleeper ready"), timeout=30)
            # Same pid, but not the process we recorded (another command line, or
            # another start time): `down` must leave it alone.
            other = ProcessRecord(**{**vars(started.record), "argv": ["something"]})
            assert not processes.is_ours(other)
            assert "was not running" in processes.stop(other)
            if started.record.start_ticks is not None:
                later = started.record.start_ticks + 1
                moved = ProcessRecord(**{**vars(started.record), "start_ticks": later})
                assert not processes.is_ours(moved)
            # Nothing was sent: the process is still alive a moment later.
            with pytest.raises(subprocess.TimeoutExpired):
                started.process.wait(timeout=0.2)
        finally:
            started.process.kill()
            started.process.wait()

    def test_early_exit_names_the_log_and_its_tail(self, tmp_path: Path) -> None:
        started = processes.spawn(
            "broken",
            [sys.executable, "-c", "import sys; print('boom: bad flag'); sys.exit(3)"],
            env={"PATH": "/usr/bin:/bin"},
            log=tmp_path / "broken.log",
            cwd=tmp_path,
        )
        with pytest.raises(processes.ProcessError) as info:
            processes.wait_for_line(started, re.compile("never"), timeout=30)
        message = str(info.value)
        assert "status 3" in message
        assert "boom: bad flag" in message
        assert str(tmp_path / "broken.log") in message

    def test_free_port_is_bindable(self) -> None:
        port = processes.free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            ok = False
            while time.monotonic() < deadline and not ok:
                ok, _ = processes.check_health(f"http://127.0.0.1:{port}/")
                time.sleep(0.05)
            assert ok
        finally:
            server.terminate()
            server.wait()


def test_hints_name_the_interpreter_as_it_must_be_typed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from devstack import hints
    from plan.stack_config import REPO_ROOT

    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    monkeypatch.setattr(sys, "executable", str(REPO_ROOT / ".venv" / "bin" / "python"))
    monkeypatch.chdir(REPO_ROOT)
    assert hints.python() == ".venv/bin/python"  # pasted in a fresh shell, it works
    monkeypatch.chdir(tmp_path)
    assert hints.python() == str(REPO_ROOT / ".venv" / "bin" / "python")  # from elsewhere
    monkeypatch.setenv("VIRTUAL_ENV", str(REPO_ROOT / ".venv"))
    assert hints.python() == "python"  # an activated venv
