"""Run the emulator as a subprocess for tests: :class:`EmulatorProcess`.

    with EmulatorProcess() as emu:
        client = emu.client()            # official CloudTasksClient over insecure gRPC
        ...                              # emu.grpc_host, emu.http_url, emu.certs_url
        emu.kill(); emu.restart()        # same ports and data file

It starts ``python -m emulator --port 0 --http-port 0`` (or the ports of a
previous run on ``restart()``), waits for the ready line and keeps the
emulator's log in a temporary file whose tail is shown if startup fails. It
deliberately does not share one emulator between tests: each instance is cheap
(well under a second) and isolation keeps tests independent.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, NoReturn

import grpc
import requests

from contract.names import EMULATOR_HOST_ENV
from emulator.clock import RealClock

READY_RE = re.compile(r"cloud-tasks-emulator ready grpc=(\S+) http=(\S+)")
_REPO_ROOT = Path(__file__).resolve().parent.parent
_CLOCK = RealClock()


class EmulatorError(RuntimeError):
    """The emulator process failed to start or stop as expected."""


class EmulatorProcess:
    """A ``python -m emulator`` subprocess bound to free loopback ports."""

    def __init__(
        self,
        data: str | os.PathLike[str] | None = None,
        *,
        tombstone_seconds: float | None = None,
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = 30.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data = Path(data) if data is not None else None
        self.tombstone_seconds = tombstone_seconds
        self.extra_args = extra_args
        self.startup_timeout = startup_timeout
        self.env = env
        self.grpc_port = 0
        self.http_port = 0
        self.grpc_host = ""
        self.http_url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._channels: list[grpc.Channel] = []

    # -- addresses --------------------------------------------------------------
    @property
    def certs_url(self) -> str:
        """Google-shaped PEM certs map (``TASKS_CERTS_URL`` for the worker)."""
        return f"{self.http_url}/oauth2/v1/certs"

    @property
    def environ(self) -> dict[str, str]:
        """``{"CLOUD_TASKS_EMULATOR_HOST": "127.0.0.1:PORT"}``, to merge into a child's env."""
        return {EMULATOR_HOST_ENV: self.grpc_host}

    @property
    def jwks_url(self) -> str:
        return f"{self.http_url}/oauth2/v3/certs"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise EmulatorError("the emulator is not running")
        return self._proc.pid

    @property
    def log_path(self) -> Path | None:
        return Path(self._log.name) if self._log is not None else None

    def log_text(self) -> str:
        path = self.log_path
        return path.read_text(errors="replace") if path and path.exists() else ""

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> EmulatorProcess:
        if self._proc is not None and self._proc.poll() is None:
            raise EmulatorError("the emulator is already running")
        cmd = [
            sys.executable,
            "-m",
            "emulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.grpc_port),
            "--http-port",
            str(self.http_port),
        ]
        if self.data is not None:
            cmd += ["--data", str(self.data)]
        if self.tombstone_seconds is not None:
            cmd += ["--tombstone-seconds", str(self.tombstone_seconds)]
        cmd += list(self.extra_args)
        if self._log is None:
            self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as self
                prefix="cloud-tasks-emulator-", suffix=".log", delete=False
            )
        env = {**os.environ, **(self.env or {}), "PYTHONUNBUFFERED": "1"}
        pythonpath = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(_REPO_ROOT) + (os.pathsep + pythonpath if pythonpath else "")
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._log, cwd=_REPO_ROOT, env=env
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        deadline = _CLOCK.monotonic() + self.startup_timeout
        buffer = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buffer:
                remaining = deadline - _CLOCK.monotonic()
                if remaining <= 0:
                    self._fail("did not print its ready line in time")
                if not sel.select(timeout=min(remaining, 0.5)):
                    if self._proc.poll() is not None:
                        self._fail(f"exited with code {self._proc.returncode} during startup")
                    continue
                chunk = os.read(self._proc.stdout.fileno(), 4096)
                if not chunk:
                    self._proc.wait(timeout=5)
                    self._fail(f"exited with code {self._proc.returncode} during startup")
                buffer += chunk
        line = buffer.split(b"\n", 1)[0].decode(errors="replace")
        match = READY_RE.fullmatch(line.strip())
        if match is None:
            raise self._fail(f"printed an unexpected first line: {line!r}")
        self.grpc_host = match.group(1)
        self.http_url = match.group(2)
        self.grpc_port = int(self.grpc_host.rsplit(":", 1)[1])
        self.http_port = int(self.http_url.rsplit(":", 1)[1])

    def _fail(self, what: str) -> NoReturn:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        tail = self.log_text()[-4000:]
        raise EmulatorError(f"the Cloud Tasks emulator {what}. Its log:\n{tail}")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        self._close_channels()
        proc = self._proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise EmulatorError("the emulator ignored SIGTERM; it was killed") from None
        self._close_pipes()
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL (simulates a crash) and reap the process."""
        self._close_channels()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._close_pipes()

    def restart(self, *, kill: bool = False) -> EmulatorProcess:
        """Stop (or kill) and start again on the same ports with the same data file."""
        if kill:
            self.kill()
        else:
            self.stop()
        # The old gRPC listener may need a moment to release the port.
        for attempt in range(20):
            try:
                return self.start()
            except EmulatorError:
                if attempt == 19:
                    raise
                time.sleep(0.25)
        raise AssertionError("unreachable")

    def _close_pipes(self) -> None:
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()

    def _close_channels(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()

    def close(self) -> None:
        """Stop the process and remove its log file."""
        try:
            if self._proc is not None and self._proc.poll() is None:
                self.stop()
        finally:
            if self._log is not None:
                self._log.close()
                Path(self._log.name).unlink(missing_ok=True)
                self._log = None

    def __enter__(self) -> EmulatorProcess:
        if self._proc is None or self._proc.poll() is not None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and self.log_path is not None:
            sys.stderr.write(f"emulator log: {self.log_path}\n{self.log_text()[-2000:]}\n")
        self.close()

    # -- clients ----------------------------------------------------------------
    def channel(self) -> grpc.Channel:
        """An insecure gRPC channel to the emulator, closed on stop()."""
        channel = grpc.insecure_channel(self.grpc_host)
        self._channels.append(channel)
        return channel

    def client(self, transport: Literal["grpc", "rest"] = "grpc") -> Any:
        """The official ``CloudTasksClient`` pointed at this emulator."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import tasks_v2
        from google.cloud.tasks_v2.services.cloud_tasks.transports import (
            CloudTasksGrpcTransport,
        )

        if transport == "grpc":
            return tasks_v2.CloudTasksClient(
                transport=CloudTasksGrpcTransport(channel=self.channel())
            )
        return tasks_v2.CloudTasksClient(
            transport="rest",
            client_options=ClientOptions(api_endpoint=self.http_url),
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )

    def health(self) -> dict[str, Any]:
        resp = requests.get(f"{self.http_url}/emulator/v1/health", timeout=5)
        resp.raise_for_status()
        result: dict[str, Any] = resp.json()
        return result

    def dropped(self, queue: str | None = None) -> dict[str, Any]:
        """GET /emulator/v1/dropped: tasks whose retries ran out, per queue."""
        params = {"queue": queue} if queue else None
        resp = requests.get(f"{self.http_url}/emulator/v1/dropped", params=params, timeout=5)
        resp.raise_for_status()
        result: dict[str, Any] = resp.json()
        return result

    def advance(self, seconds: float, wait_seconds: float = 30.0) -> float:
        """POST /emulator/v1/clock:advance (``--manual-clock`` only); the new time."""
        resp = requests.post(
            f"{self.http_url}/emulator/v1/clock:advance",
            json={"seconds": seconds, "waitSeconds": wait_seconds},
            timeout=wait_seconds + 30,
        )
        resp.raise_for_status()
        return float(resp.json()["now"])

    def run_due(self, queue: str) -> int:
        """POST /emulator/v1/QUEUE_NAME:runDue: attempt every due task of the queue now."""
        resp = requests.post(f"{self.http_url}/emulator/v1/{queue}:runDue", timeout=10)
        resp.raise_for_status()
        return int(resp.json()["started"])

    def reset_tombstones(self) -> int:
        resp = requests.post(f"{self.http_url}/emulator/v1/tombstones:reset", timeout=5)
        resp.raise_for_status()
        return int(resp.json()["cleared"])
