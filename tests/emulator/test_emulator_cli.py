"""The command line: ready line, signals, bad flags."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.testing import READY_RE, EmulatorProcess

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emulator", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_prints_one_ready_line_and_exits_cleanly_on_signal(sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", "0", "--http-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert READY_RE.fullmatch(line.strip()), line
        assert re.fullmatch(
            r"cloud-tasks-emulator ready grpc=127\.0\.0\.1:\d+ http=http://127\.0\.0\.1:\d+\n", line
        )
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert out == ""  # exactly one line on stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_port_flag_says_what_is_wrong() -> None:
    result = _run("--port", "70000")
    assert result.returncode == 2
    assert "0..65535" in result.stderr


def test_unusable_data_file_fails_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    result = _run("--port", "0", "--http-port", "0", "--data", str(tmp_path / "a-file" / "x.db"))
    assert result.returncode != 0
    assert "--data" in result.stderr
    assert not any(noise in result.stderr for noise in _NOISE), result.stderr


def test_a_missing_data_directory_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "x.db"
    with EmulatorProcess(path):
        assert (path.parent.stat().st_mode & 0o777) == 0o700
        assert (path.stat().st_mode & 0o777) == 0o600


def test_restart_keeps_the_ports() -> None:
    with EmulatorProcess() as emu:
        grpc_host, http_url = emu.grpc_host, emu.http_url
        emu.restart()
        assert (emu.grpc_host, emu.http_url) == (grpc_host, http_url)
        assert emu.environ == {"CLOUD_TASKS_EMULATOR_HOST": grpc_host}
        assert emu.health()["status"] == "ok"


_NOISE = ("Traceback", "Unclosed", "never awaited", "Event loop is closed")


def test_busy_http_port_exits_with_the_message_alone() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = _run("--port", "0", "--http-port", str(port))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"cloud-tasks-emulator: cannot bind the HTTP port 127.0.0.1:{port}: Address already "
        "in use; pass --http-port 0 to pick a free port\n"
    )


def test_a_host_that_does_not_resolve_names_the_host_not_the_port() -> None:
    result = _run("--host", "nosuchhost.invalid", "--port", "0", "--http-port", "0")
    assert result.returncode == 1
    assert result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("cloud-tasks-emulator: cannot bind the HTTP port nosuchhost.invalid:0")
    assert last.endswith("pass --host with an address of this machine (127.0.0.1 by default)")
    assert "Traceback" not in result.stderr


def test_busy_grpc_port_exits_without_a_traceback() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = _run("--port", str(port), "--http-port", "0")
    assert result.returncode == 1
    assert result.stderr == (
        f"cloud-tasks-emulator: cannot bind the gRPC port 127.0.0.1:{port}: Address already "
        "in use; pass --port 0 to pick a free port\n"
    )


@pytest.mark.parametrize("content", ["garbage", "other-sqlite"])
def test_data_file_that_is_not_an_emulator_database(tmp_path: Path, content: str) -> None:
    path = tmp_path / "x.db"
    if content == "garbage":
        path.write_text("garbage\n")
    else:
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("CREATE TABLE tasks (something TEXT)")
            db.commit()
    result = _run("--port", "0", "--http-port", "0", "--data", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"cloud-tasks-emulator: the data file {path} is not an emulator database ("
    )
    assert "pass --data with a new file path" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert not any(noise in result.stderr for noise in _NOISE)
