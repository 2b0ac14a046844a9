"""`python -m service`: build the app (`service.app.create_app`) and serve it with uvicorn.

Same command in the Dockerfile, in the Cloud Run container and in the local
stack. uvicorn (uvloop + httptools) is the server, with the header size limit and
header read timeout httptools lacks (`service.http_limits`); what it lacks for
Cloud Run is added by `DrainingServer`:

* uvicorn on SIGTERM closes the listening socket at once and waits for
  in-flight requests with no time limit by default. Cloud Run sends SIGKILL
  10 s after SIGTERM, so a task still running then is cut off with no answer.
* Here SIGTERM first *drains*: the socket stays open and new deliveries get
  503 + Retry-After (Cloud Tasks retries them, on another instance), while
  in-flight tasks run on. As soon as none are left, or after
  `TASKS_SHUTDOWN_GRACE_S` (8 s), uvicorn's own shutdown runs, with 1 s more
  before it cancels what is left (those tasks' claims are released, so their
  retries run). A second SIGINT/SIGTERM exits at once. Exit code 0.

The app is built here, after the logging is configured, from the same
`Settings` (a configuration error exits 2 with one JSON line, before anything
listens). `uvicorn service.app:create_app --factory` serves the same app without
the drain. It deliberately runs one process: the in-memory idempotency store is per
process, and Cloud Run scales by instances, not by forking.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from types import FrameType
from typing import Final

from contract.interpreter import exit_if_foreign

try:
    import uvicorn

    from service.app import create_app
    from service.config import ConfigError, Settings
    from service.drain import Drain
    from service.http_limits import MAX_HEADER_BYTES, limited_protocol
    from service.logs import configure_logging
    from service.task_registry import busy_handler_threads
except ModuleNotFoundError as _missing:  # a fresh shell's `python` is not the project's
    exit_if_foreign("python -m service", _missing, __name__)

logger = logging.getLogger("service.server")

# What uvicorn gets after the drain: enough to flush responses already being written.
FINAL_SHUTDOWN_TIMEOUT_S: Final = 1
# An idle keep-alive connection is closed after this (uvicorn's default, made explicit);
# a request's header and body have their own limits (service.http_limits, service.app).
KEEP_ALIVE_TIMEOUT_S: Final = 5


class DrainingServer(uvicorn.Server):
    """uvicorn.Server that drains before shutting down (see module docstring)."""

    def __init__(self, config: uvicorn.Config, *, drain: Drain, grace_s: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.grace_s = grace_s
        self._draining_since: float | None = None
        self._drain_reported = False
        self._listening_reported = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not appending to `_captured_signals`: uvicorn would re-raise SIGTERM after
        # a clean shutdown and the process would exit "killed" instead of 0.
        if self._draining_since is not None or not self.started:
            # A second signal, or one before startup finished: stop now.
            self.force_exit = self._draining_since is not None
            self.should_exit = True
            return
        self._draining_since = time.monotonic()
        self.drain.begin()
        # Signal handlers must not log (logging takes locks); on_tick reports it.

    async def on_tick(self, counter: int) -> bool:
        if not self._listening_reported:
            self._listening_reported = True
            self._report_listening()
        if self._draining_since is not None and not self.should_exit:
            self._check_drain(time.monotonic() - self._draining_since)
        return await super().on_tick(counter)

    def _report_listening(self) -> None:
        for server in getattr(self, "servers", []):
            for sock in server.sockets or ():
                host, port = sock.getsockname()[:2]
                logger.info(
                    "listening on http://%s:%d",
                    host,
                    port,
                    extra={"fields": {"host": host, "port": port}},
                )

    def _check_drain(self, elapsed: float) -> None:
        inflight = self.drain.inflight
        if not self._drain_reported:
            self._drain_reported = True
            logger.info(
                "SIGTERM: draining, new tasks get 503",
                extra={"fields": {"inflight": inflight, "grace_s": self.grace_s}},
            )
        if inflight == 0:
            logger.info("drained, shutting down", extra={"fields": {"drain_s": round(elapsed, 3)}})
            self.should_exit = True
        elif elapsed >= self.grace_s:
            logger.error(
                "shutdown grace of %g s exceeded with %d task(s) in flight; cancelling "
                "them, Cloud Tasks will retry",
                self.grace_s,
                inflight,
                extra={"fields": {"inflight": inflight}},
            )
            self.should_exit = True


def _fatal(exc: ConfigError) -> None:
    # Still one JSON line, so Cloud Logging shows why the revision failed to start.
    line = {"severity": "CRITICAL", "message": f"service: configuration error: {exc}"}
    print(json.dumps(line), file=sys.stderr, flush=True)


def main() -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        _fatal(exc)
        return 2
    configure_logging(settings.log_level)
    try:
        app = create_app(settings)
    except ConfigError as exc:
        _fatal(exc)
        return 2
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        # httptools, plus the header size limit and header read timeout it lacks.
        http=limited_protocol(settings.header_timeout_s),
        # Used only if the protocol is switched to h11: the same header size limit.
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT_S,
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=FINAL_SHUTDOWN_TIMEOUT_S,
    )
    server = DrainingServer(config, drain=app.state.drain, grace_s=settings.shutdown_grace_s)
    server.run()
    code = 0 if server.started else 1
    busy = busy_handler_threads()
    if busy:
        # Threads cannot be stopped and the interpreter would wait for them at exit,
        # past Cloud Run's SIGKILL. Their tasks were not acknowledged: Cloud Tasks retries.
        logger.error(
            "exiting with %d handler thread(s) still running; their tasks will be retried",
            busy,
        )
        logging.shutdown()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
