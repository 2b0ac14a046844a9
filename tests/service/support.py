"""Test helpers for the worker: a Google-like token issuer and the worker as a process.

* `LocalIssuer` serves the public keys of one or more `emulator.oidc.OidcIssuer`
  keys from an HTTP server on 127.0.0.1, as Google does (`GET /oauth2/v1/certs`:
  key id -> PEM certificate; `/oauth2/v3/certs`: a JWKS; both with
  `Cache-Control: max-age`; Google's keys and caching are described at
  https://developers.google.com/identity/openid-connect/openid-connect#validatinganidtoken),
  and mints ID tokens with them. Key generation, signing and the key documents
  are `emulator.oidc`'s, the same code the local emulator dispatches with; what
  this adds is what negative tests need: several keys (rotation), hand-made
  claims (expired, wrong audience, `nbf`, missing email, ...), failing fetches
  and a fetch counter.
* `WorkerProcess` runs `python -m service` (the image's command) on a port the
  OS picks (PORT=0; the port is read from the worker's own "listening" log
  line, so there is no race for a free port), collects its JSON log lines, and
  stops it with SIGTERM like Cloud Run does. Only the tests that need a real
  process use it: signals and shutdown, the command itself, and end-to-end runs
  with the emulator; everything else goes through `tests.service.asgi`.

Used by tests/service and benchmarks/service_bench.py. It lives in the tests
tree so it never ships in the worker image, and nothing here talks to Google.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from contract.names import (
    GOOGLE_ISSUER,
    WORKER_ENV_ALLOWED_INVOKERS,
    WORKER_ENV_AUDIENCE,
    WORKER_ENV_CERTS_URL,
    WORKER_ENV_PORT,
)
from emulator.oidc import OidcIssuer, google_id_token_claims

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
DEFAULT_INVOKER: Final = "tasks-invoker@test-project.iam.gserviceaccount.com"
DEFAULT_AUDIENCE: Final = "https://worker-test.a.run.app"


class LocalIssuer:
    """A Google-like ID token issuer on 127.0.0.1 (context manager)."""

    def __init__(self, *, max_age_s: int = 3600, key: OidcIssuer | None = None) -> None:
        # `key`: reuse one (an RSA key takes ~0.1-0.3 s to generate) across issuers.
        self.keys: list[OidcIssuer] = [key or OidcIssuer()]
        self.max_age_s = max_age_s
        self.fetches = 0
        self.fail_next_fetches = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- serving -----------------------------------------------------------------
    def __enter__(self) -> LocalIssuer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                documents = {"/oauth2/v1/certs": issuer.certs, "/oauth2/v3/certs": issuer.jwks}
                if self.path not in documents:
                    self.send_error(404)
                    return
                with issuer._lock:
                    issuer.fetches += 1
                    failing = issuer.fail_next_fetches > 0
                    if failing:
                        issuer.fail_next_fetches -= 1
                    body = json.dumps(documents[self.path]()).encode()
                if failing:
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Cache-Control", f"public, max-age={issuer.max_age_s}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def origin(self) -> str:
        assert self._server is not None, "LocalIssuer is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def certs_url(self) -> str:
        return f"{self.origin}/oauth2/v1/certs"

    @property
    def jwks_url(self) -> str:
        return f"{self.origin}/oauth2/v3/certs"

    def certs(self) -> dict[str, str]:
        """Google's v1 shape: key id -> PEM certificate, for every published key."""
        return {kid: pem for key in self.keys for kid, pem in key.pem_certs().items()}

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """Google's v3 shape: a JWKS of every published key."""
        return {"keys": [key.jwk() for key in self.keys]}

    def rotate(self) -> OidcIssuer:
        """Publish a new key (kept alongside the old ones) and return it."""
        key = OidcIssuer()
        with self._lock:
            self.keys.append(key)
        return key

    # --- tokens --------------------------------------------------------------------
    def token(
        self,
        *,
        email: str = DEFAULT_INVOKER,
        audience: str = DEFAULT_AUDIENCE,
        expires_in: float = 3600,
        issued_ago: float = 0,
        email_verified: Any = True,
        issuer: str = GOOGLE_ISSUER,
        key: OidcIssuer | None = None,
        omit: tuple[str, ...] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """An ID token shaped like Google's, signed by `key` (default: the first key).

        `key` may be an unpublished `OidcIssuer` (an unknown key id), or one made
        with a published key's `kid` (a forgery); `extra` adds or overrides
        claims (`nbf`, a nonce), `omit` drops them.
        """
        now = int(time.time() - issued_ago)
        claims = google_id_token_claims(email, audience, issued_at=now, lifetime_s=expires_in)
        claims.update(iss=issuer, email_verified=email_verified, **(extra or {}))
        for name in omit:
            claims.pop(name, None)
        return (key or self.keys[0]).sign(claims)


class LogEntries:
    """The worker's JSON log entries as another thread collects them, and a wait for one.

    Shared by the worker process (`WorkerProcess`, its log file) and the in-process
    app (`tests.service.asgi.LogCapture`, its log records).
    """

    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []
        self._cond = threading.Condition()

    def _append(self, entry: dict[str, Any]) -> None:
        with self._cond:
            self.logs.append(entry)
            self._cond.notify_all()

    def _ended(self) -> bool:
        """True when no more entries can come (the source is gone)."""
        return False

    def wait_for_log(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """The first entry matching `predicate`, waiting up to `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for entry in self.logs:
                    if predicate(entry):
                        return entry
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._ended():
                    raise TimeoutError("no matching log entry")
                self._cond.wait(min(remaining, 0.1))

    def entries(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """Every entry so far matching `predicate`."""
        with self._cond:
            return [e for e in self.logs if predicate(e)]


class WorkerProcess(LogEntries):
    """`python -m service` as a subprocess on 127.0.0.1 (context manager)."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        ready_timeout_s: float = 15.0,
        cwd: Path = REPO_ROOT,
    ) -> None:
        super().__init__()
        self.raw_lines: list[str] = []
        base = {k: v for k, v in os.environ.items() if not k.startswith("TASKS_")}
        base.update({"HOST": "127.0.0.1", WORKER_ENV_PORT: "0", "PYTHONUNBUFFERED": "1"})
        base.update(env or {})
        # The worker writes its log to a file, not a pipe: a pipe fills up whenever
        # the reader falls behind (as it does under a load test) and then blocks the
        # worker's own writes, which would measure this harness instead of the worker.
        self._log_fd, log_name = tempfile.mkstemp(prefix="worker-", suffix=".log")
        self.log_path = Path(log_name)
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=cwd,
            env=base,
            stdout=self._log_fd,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            line = self.wait_for_log(
                lambda e: e.get("logger") == "service.server" and "port" in e, ready_timeout_s
            )
        except TimeoutError:
            self.kill()
            raise RuntimeError(
                "worker did not start; its output:\n" + "\n".join(self.raw_lines)
            ) from None
        self.port = int(line["port"])
        self.url = f"http://127.0.0.1:{self.port}"

    @classmethod
    def with_auth(
        cls,
        issuer: LocalIssuer,
        *,
        audience: str = DEFAULT_AUDIENCE,
        invokers: tuple[str, ...] = (DEFAULT_INVOKER,),
        env: Mapping[str, str] | None = None,
    ) -> WorkerProcess:
        """A worker whose token check trusts `issuer`."""
        return cls(
            {
                WORKER_ENV_AUDIENCE: audience,
                WORKER_ENV_ALLOWED_INVOKERS: ",".join(invokers),
                WORKER_ENV_CERTS_URL: issuer.certs_url,
                **(env or {}),
            }
        )

    def _read(self) -> None:
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            pending = ""
            while True:
                chunk = log.readline()
                if not chunk:
                    if self.proc.poll() is not None:
                        chunk = log.read()  # whatever was written before the exit
                        if not chunk:
                            break
                    else:
                        time.sleep(0.01)
                        continue
                pending += chunk
                if not pending.endswith("\n") and self.proc.poll() is None:
                    continue  # a partial line: wait for the rest
                for line in pending.splitlines():
                    self._add(line)
                pending = ""

    def _add(self, line: str) -> None:
        with self._cond:
            self.raw_lines.append(line)
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            self._append(entry)

    def _ended(self) -> bool:
        return self.proc.poll() is not None and not self._reader.is_alive()

    def terminate(self) -> None:
        """SIGTERM, as Cloud Run sends before stopping an instance."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float = 15.0) -> int:
        code = self.proc.wait(timeout_s)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)
        self._close_log()

    def stop(self) -> None:
        """SIGTERM and wait; SIGKILL if it does not exit within 15 s."""
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(5)
        self._close_log()

    def _close_log(self) -> None:
        if self._log_fd >= 0:
            os.close(self._log_fd)
            self._log_fd = -1
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def iter_json_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects in a JSON-lines file; nothing if it does not exist."""
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        if line.strip():
            yield json.loads(line)
