"""The command line: ready line, signals, bad flags."""

from __future__ import annotations

import re
import signal
import socket
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


def test_busy_http_port_fails_with_a_hint() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = _run("--port", "0", "--http-port", str(port))
    assert result.returncode != 0
    assert "--http-port 0" in result.stderr


def test_unusable_data_file_fails_with_a_hint(tmp_path: Path) -> None:
    result = _run(
        "--port", "0", "--http-port", "0", "--data", str(tmp_path / "no" / "dir" / "x.db")
    )
    assert result.returncode != 0
    assert "--data" in result.stderr


def test_restart_keeps_the_ports() -> None:
    with EmulatorProcess() as emu:
        grpc_host, http_url = emu.grpc_host, emu.http_url
        emu.restart()
        assert (emu.grpc_host, emu.http_url) == (grpc_host, http_url)
        assert emu.environ == {"CLOUD_TASKS_EMULATOR_HOST": grpc_host}
        assert emu.health()["status"] == "ok"
