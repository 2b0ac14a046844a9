"""Limits on what a caller may make the worker hold before any token is checked.

uvicorn's httptools protocol (the fastest it has, which `python -m service`
uses) bounds neither the size of a request's header section nor the time it
may take to arrive: llhttp has no header size limit, and uvicorn's only timer
(`timeout_keep_alive`) runs between requests, not while one is being read. One
unauthenticated 64 MiB header then stalls the event loop (and `/healthz`) for
seconds and takes hundreds of MB; a connection that trickles a header byte at
a time stays open for ever. `LimitedHttpToolsProtocol` adds both limits
below the app:

* header section above `MAX_HEADER_BYTES`: `431 Request Header Fields Too
  Large` (RFC 6585 section 5) and the connection closed, as soon as the bytes
  received while waiting for the end of the headers pass the limit. RFC 9110
  section 5.4: a server that receives "a set of fields larger than it wishes to
  process MUST respond with an appropriate 4xx (Client Error) status code";
* header section not complete `TASKS_HEADER_TIMEOUT_S` (10 s) after the connection opened or
  the request began: `408 Request Timeout` (RFC 9110 section 15.5.9) and closed.

`HeaderLimit` is the same size limit at the ASGI level, for a server that is not
this one (`uvicorn service.app:create_app --factory`): it cannot save the time and
memory already spent parsing, but the app never acts on such a request. The body's
own size and read time are bounded by the app (`service.app`).

It deliberately does not limit connections or request rates: Cloud Run's
`containerConcurrency` and its front end do that.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger("service.http")

# Cloud Tasks sends a few hundred bytes of X-CloudTasks-* headers and a ~1 KB ID
# token; 64 KiB is four times uvicorn's own h11 default (16 KiB).
MAX_HEADER_BYTES: Final = 64 * 1024
HEADER_TIMEOUT_S: Final = 10.0  # TASKS_HEADER_TIMEOUT_S (service.config)


def _plain_response(status: int, reason: str, text: str) -> bytes:
    body = text.encode("ascii")
    return (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode("ascii") + body


TOO_LARGE: Final = _plain_response(431, "Request Header Fields Too Large", "header too large")
TIMED_OUT: Final = _plain_response(408, "Request Timeout", "header not received in time")


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header size limit and a header read timeout."""

    header_timeout_s: float = HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0
        self._headers_done = False  # False while waiting for a request's header section
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # refused already: parse nothing more
        super().data_received(data)
        if self._headers_done or self.transport.is_closing():
            return
        # Every byte since the header section began counts (a small over-count when
        # a chunk also ends the previous request's body): the parser holds them.
        self._header_bytes += len(data)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(TOO_LARGE, f"request header section above {MAX_HEADER_BYTES} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers_done = False
        self._header_bytes = 0
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._cancel_header_timer()
        super().on_headers_complete()

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if not self._headers_done and not self.transport.is_closing():
            self._refuse(
                TIMED_OUT, f"request header not complete after {self.header_timeout_s:g} s"
            )

    def _refuse(self, response: bytes, reason: str) -> None:
        self._cancel_header_timer()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else None
        logger.warning("refused a request: %s", reason, extra={"fields": {"client": client}})
        if self.cycle is None or self.cycle.response_complete:
            # Not in the middle of answering a previous (pipelined) request.
            self.transport.write(response)
        self.transport.close()


def limited_protocol(header_timeout_s: float) -> type[LimitedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=`, with this header read timeout."""
    attributes = {"header_timeout_s": header_timeout_s}
    return type("WorkerHttpProtocol", (LimitedHttpToolsProtocol,), attributes)


class HeaderLimit:
    """ASGI middleware: 431 for a header section above `MAX_HEADER_BYTES` (any server)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
            if size > MAX_HEADER_BYTES:
                logger.warning(
                    "refused a request: header section of %d bytes above %d",
                    size,
                    MAX_HEADER_BYTES,
                )
                headers = [(b"content-type", b"text/plain"), (b"connection", b"close")]
                await send({"type": "http.response.start", "status": 431, "headers": headers})
                await send({"type": "http.response.body", "body": b"header too large"})
                return
        await self.app(scope, receive, send)
