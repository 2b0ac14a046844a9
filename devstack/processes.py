"""Start, watch and stop the local stack's processes.

Each process runs in its own session with stdout and stderr appended to a log
file, so it outlives `up --detach` without a pipe to a dead parent, and its
ready line is read from the log. A process is stopped only after checking that
the recorded pid still names the very process we started (same kernel start
time and command line): a recycled pid is never signalled.

Deliberately not here: restarting crashed processes (the stack reports them;
`up` again restarts it) and anything Windows-specific (Linux /proc, with a
`ps` fallback for the command line elsewhere).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from devstack.state import ProcessRecord


class ProcessError(Exception):
    """A process did not start or did not become healthy; the message names its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now on host (the OS picks it; never a fixed number)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    # [0] is field 3 (the state letter).
    return raw[raw.rfind(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """Kernel start time of pid in clock ticks since boot, None when unknown."""
    stat = _proc_stat(pid)
    if stat is None or len(stat) < 20:
        return None
    return int(stat[19])  # field 22


def cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        raw = b""
    if raw:
        return raw.rstrip(b"\0").decode(errors="replace").split("\0")
    if Path("/proc/self/stat").exists():
        return None  # Linux and no command line: a zombie or gone
    out = subprocess.run(
        ["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, check=False
    )
    return out.stdout.split() if out.returncode == 0 and out.stdout.strip() else None


def is_running(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    stat = _proc_stat(pid)
    if stat is not None:
        return stat[0] != "Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not Path("/proc/self/stat").exists()  # on Linux a missing /proc/PID means gone


def is_ours(record: ProcessRecord) -> bool:
    """The recorded process still runs and is the one we started (not a reused pid)."""
    if not is_running(record.pid):
        return False
    if record.start_ticks is not None:
        ticks = start_ticks(record.pid)
        if ticks is not None and ticks != record.start_ticks:
            return False
    argv = cmdline(record.pid)
    return argv is not None and argv == record.argv


@dataclass
class Started:
    process: subprocess.Popen[bytes]
    record: ProcessRecord
    log_offset: int


def spawn(
    role: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log: Path,
    cwd: Path,
    url: str = "",
    health_path: str = "",
) -> Started:
    """Start argv in its own session, appending its output to log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        offset = out.tell()
        out.write(f"--- devstack: starting {role}: {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            # Own session: Ctrl-C in the terminal reaches `up`, which stops the
            # children in order, instead of killing them all at once mid-write.
            start_new_session=True,
        )
    record = ProcessRecord(
        role=role,
        pid=proc.pid,
        argv=list(argv),
        log=str(log),
        start_ticks=start_ticks(proc.pid),
        url=url,
        health_path=health_path,
    )
    return Started(process=proc, record=record, log_offset=offset)


def _tail(log: Path, lines: int = 15) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:])


def wait_for_line(started: Started, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
    """Wait until the process writes a line matching pattern to its log."""
    log = Path(started.record.log)
    deadline = time.monotonic() + timeout
    while True:
        with log.open("rb") as f:
            f.seek(started.log_offset)
            for line in f.read().decode(errors="replace").splitlines():
                match = pattern.search(line)
                if match:
                    return match
        code = started.process.poll()
        if code is not None:
            raise ProcessError(
                f"the {started.record.role} exited with status {code} before it was ready; "
                f"its log ({log}) ends with:\n{_tail(log)}"
            )
        if time.monotonic() > deadline:
            raise ProcessError(
                f"the {started.record.role} printed no ready line within {timeout:.0f} s; "
                f"its log ({log}) ends with:\n{_tail(log)}"
            )
        time.sleep(0.02)


def check_health(url: str, timeout: float = 1.0) -> tuple[bool, str]:
    """GET url: (healthy, short description)."""
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return response.is_success, f"HTTP {response.status_code}"


def wait_healthy(started: Started, timeout: float) -> None:
    url = started.record.url + started.record.health_path
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        code = started.process.poll()
        if code is not None:
            log = Path(started.record.log)
            raise ProcessError(
                f"the {started.record.role} exited with status {code} while starting; "
                f"its log ({log}) ends with:\n{_tail(log)}"
            )
        ok, last = check_health(url, timeout=0.5)
        if ok:
            return
        if time.monotonic() > deadline:
            log = Path(started.record.log)
            raise ProcessError(
                f"the {started.record.role} did not answer {url} with 2xx within "
                f"{timeout:.0f} s (last: {last}); its log ({log}) ends with:\n{_tail(log)}"
            )
        time.sleep(0.03)


def stop(
    record: ProcessRecord,
    *,
    child: subprocess.Popen[bytes] | None = None,
    timeout: float = 5.0,
) -> str:
    """Stop one recorded process if it is still ours: SIGTERM, then SIGKILL after timeout.

    Returns what happened, for the user. child, when this process started it,
    is reaped so that no zombie is left behind.
    """
    if child is not None:
        # Our own unreaped child cannot have a recycled pid, and right after
        # spawn its command line may not show the exec yet: trust the Popen.
        code = child.poll()
        if code is not None:
            return f"{record.role} (pid {record.pid}) had exited with status {code}"
    elif not is_ours(record):
        return f"{record.role} (pid {record.pid}) was not running"
    # The process leads its own session and process group (start_new_session), so
    # signalling the group also reaches anything it spawned.
    _signal_group(record.pid, signal.SIGTERM)
    if _wait_gone(record, child, timeout):
        return f"{record.role} (pid {record.pid}) stopped"
    _signal_group(record.pid, signal.SIGKILL)
    _wait_gone(record, child, 2.0)
    return f"{record.role} (pid {record.pid}) did not stop within {timeout:.0f} s: killed"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(
    record: ProcessRecord, child: subprocess.Popen[bytes] | None, timeout: float
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=0.05)
                return True
        elif not is_running(record.pid):
            return True
        else:
            time.sleep(0.05)
    return False
