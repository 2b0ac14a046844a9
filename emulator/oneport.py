"""``--one-port``: gRPC and HTTP on one address, as Google's endpoint serves both on :443.

A listener in front of the two servers reads the first bytes of each
connection: the HTTP/2 client preface (``PRI * HTTP/2.0``...), which every gRPC
client sends first over a plaintext channel, goes to the gRPC server; anything
else (HTTP/1.1 REST, OIDC certs, admin calls) goes to the HTTP server. Both
servers listen on loopback ports of their own and the bytes are relayed both
ways, so neither server needs to know. The relay costs a copy per chunk on the
event loop; separate ports (the default) avoid it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Final

log = logging.getLogger("emulator.oneport")

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_FIRST_BYTES_TIMEOUT_S: Final = 30.0
_CHUNK: Final = 256 * 1024


async def _first_bytes(reader: asyncio.StreamReader) -> bytes:
    """Read until the bytes either are the HTTP/2 preface or cannot become it."""
    head = b""
    while len(head) < len(PREFACE) and PREFACE.startswith(head):
        chunk = await reader.read(len(PREFACE) - len(head))
        if not chunk:
            break
        head += chunk
    return head


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-close: the other direction may still be talking
    except (ConnectionError, OSError):
        writer.close()


class PortSharer:
    """Accepts on one socket and relays each connection to the gRPC or the HTTP port."""

    def __init__(self, grpc_port: int, http_port: int) -> None:
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.server: asyncio.Server | None = None
        self.connections: set[asyncio.Task[None]] = set()

    async def start(self, sock: socket.socket) -> None:
        self.server = await asyncio.start_server(self._accepted, sock=sock)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.connections):
            task.cancel()
        for task in list(self.connections):
            with contextlib.suppress(BaseException):
                await task

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            await self._relay(reader, writer)
        except (ConnectionError, OSError, TimeoutError) as exc:
            log.debug("connection ended: %s", exc)
        finally:
            self.connections.discard(task)
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(_first_bytes(reader), _FIRST_BYTES_TIMEOUT_S)
        if not head:
            return
        port = self.grpc_port if head == PREFACE else self.http_port
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            up_writer.write(head)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()
