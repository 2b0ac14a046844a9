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
import logging
import socket
from typing import Final

log = logging.getLogger("emulator.oneport")

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def route(head: bytes) -> bool | None:
    """True: gRPC (the HTTP/2 preface); False: HTTP; None: too few bytes to tell yet."""
    if head.startswith(PREFACE):
        return True
    if PREFACE.startswith(head):
        return None
    return False


class _Side(asyncio.Protocol):
    """One end of a relayed connection; ``peer`` is the other end's transport.

    Protocol callbacks rather than streams: each chunk is written straight to the
    peer, with no task wake-up per chunk, and back-pressure is passed on by
    pausing the reading side while the writing side's buffer is full."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.pending: list[bytes] = []
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.pending.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        if self.peer is not None and self.peer.transport is not None:
            if self.peer.transport.can_write_eof():
                self.peer.transport.write_eof()
            else:
                self.peer.transport.close()
        return True  # half-close: the other direction may still be talking

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    # The peer's write buffer is full or drained again: stop or resume reading.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def attach(self, peer: _Side) -> None:
        """Connect two sides; what either received so far is passed on."""
        self.peer, peer.peer = peer, self
        for side in (self, peer):
            assert side.peer is not None
            assert side.peer.transport is not None
            for chunk in side.pending:
                side.peer.transport.write(chunk)
            side.pending.clear()
            if side.eof:
                side.eof_received()


class _Client(_Side):
    """A connection to the public port: reads until it can tell, then opens upstream."""

    def __init__(self, sharer: PortSharer) -> None:
        super().__init__()
        self.sharer = sharer
        self.head = b""
        self.decided = False

    def data_received(self, data: bytes) -> None:
        if self.decided:
            super().data_received(data)
            return
        self.head += data
        grpc = route(self.head)
        if grpc is None:
            return
        self.decided = True
        self.pending.append(self.head)
        assert self.transport is not None
        self.transport.pause_reading()  # until upstream is connected
        self.sharer.connect(self, self.sharer.grpc_port if grpc else self.sharer.http_port)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.sharer.clients.discard(self)


class PortSharer:
    """Accepts on one socket and relays each connection to the gRPC or the HTTP port."""

    def __init__(self, grpc_port: int, http_port: int) -> None:
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.server: asyncio.Server | None = None
        self.clients: set[_Client] = set()
        self.connecting: set[asyncio.Task[None]] = set()

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._client, sock=sock)

    def _client(self) -> _Client:
        client = _Client(self)
        self.clients.add(client)
        return client

    def connect(self, client: _Client, port: int) -> None:
        task = asyncio.get_running_loop().create_task(self._connect(client, port))
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)

    async def _connect(self, client: _Client, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(_Side, "127.0.0.1", port)
        except OSError as exc:
            log.warning("cannot reach the internal port %d: %s", port, exc)
            if client.transport is not None:
                client.transport.close()
            return
        if client.transport is None:  # the client left meanwhile
            assert upstream.transport is not None
            upstream.transport.close()
            return
        client.attach(upstream)
        client.transport.resume_reading()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.connecting):
            task.cancel()
        for client in list(self.clients):
            for side in (client, client.peer):
                if side is not None and side.transport is not None:
                    side.transport.close()
        await asyncio.sleep(0)  # let the transports run their connection_lost
