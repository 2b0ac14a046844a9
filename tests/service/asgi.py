"""The worker app in the test process: `create_app()` behind `httpx.ASGITransport`.

* `AppServer` runs an app's lifespan (HTTP client, certificate prefetch) and
  its requests on one event loop in a background thread (an anyio blocking
  portal), so synchronous tests send requests, from several threads at once
  if they like, and the app's background work (settling an abandoned handler
  thread) goes on between them, as it does in the real server.
* `LogCapture` renders the `service` loggers' records with the worker's own
  `CloudLoggingFormatter`, so a test reads the same JSON entries Cloud Logging
  would, without a process.

Deliberately no server, socket or signal: the drain on SIGTERM, the image's
command and the end-to-end runs with the emulator are tested against a real
process (`tests.service.support.WorkerProcess`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Final

import anyio
import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from starlette.applications import Starlette

from service.logs import CloudLoggingFormatter
from tests.service.support import LogEntries

BASE_URL: Final = "http://worker.test"


class LogCapture(logging.Handler, LogEntries):
    """Every record of a logger tree, as the JSON entries the worker would print."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)
        LogEntries.__init__(self)
        self.setFormatter(CloudLoggingFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self._append(json.loads(self.format(record)))


@contextlib.contextmanager
def capture_logs(name: str = "service", level: int = logging.INFO) -> Iterator[LogCapture]:
    """Capture logger `name` and its children at `level` or above, inside the block."""
    target = logging.getLogger(name)
    capture = LogCapture()
    saved_level = target.level
    target.addHandler(capture)
    target.setLevel(level)
    try:
        yield capture
    finally:
        target.removeHandler(capture)
        target.setLevel(saved_level)


class AppServer:
    """An app's lifespan and requests on an event loop in a thread (context manager)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self._stack = contextlib.ExitStack()
        self._portal: BlockingPortal | None = None
        self._client: httpx.AsyncClient | None = None

    def __enter__(self) -> AppServer:
        try:
            portal = self._stack.enter_context(start_blocking_portal(backend="asyncio"))
            self._portal = portal
            lifespan = self.app.router.lifespan_context(self.app)
            self._stack.enter_context(portal.wrap_async_context_manager(lifespan))
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=self.app), base_url=BASE_URL
            )
            self._stack.enter_context(portal.wrap_async_context_manager(client))
            self._client = client
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> httpx.Response:
        """One request through the app; raises TimeoutError past `timeout` seconds."""
        portal, client = self._portal, self._client
        assert portal is not None, "AppServer is not entered"
        assert client is not None

        async def send() -> httpx.Response:
            with anyio.fail_after(timeout):
                return await client.request(method, path, content=content, headers=headers)

        return portal.call(send)
