"""Delivery behind a small interface: perform one built HTTP request, report the answer.

:class:`Deliverer` is what the dispatcher needs: given an
:class:`OutboundRequest` (method, URL, headers, body: everything Cloud Tasks
would send), perform it and return a :class:`DeliveryResult` (status, reason,
headers), or raise :class:`Unreachable` when no HTTP answer came.
:class:`HttpDeliverer` is the real one (aiohttp on the event loop); tests pass
an in-process one.

It deliberately does not enforce the dispatch deadline (the dispatcher does,
with its clock), build requests (emulator/request.py) or interpret statuses
(emulator/retry.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

import aiohttp

# Cloud Tasks sends no default Content-Type, Accept or encoding, and its own User-Agent.
_SKIP_AUTO_HEADERS: Final = ("Content-Type", "Accept", "Accept-Encoding", "User-Agent")
_MAX_DRAIN_BYTES: Final = 1024 * 1024


@dataclass(frozen=True)
class OutboundRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class DeliveryResult:
    status: int
    reason: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


class Unreachable(Exception):
    """No HTTP answer: connection refused or reset, DNS failure, garbage response."""


class Deliverer(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def deliver(self, request: OutboundRequest) -> DeliveryResult:
        """Perform ``request``; raise :class:`Unreachable` when no HTTP answer came."""
        ...


class HttpDeliverer:
    """Real HTTP delivery with one shared aiohttp session."""

    def __init__(self) -> None:
        self._client: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # aiohttp rather than httpx: httpx's pool slows down badly with hundreds of
        # concurrent connections (a 500-token burst), aiohttp sustains 500/s on 2 cores.
        # trust_env=False: a proxy from the environment must never see local deliveries.
        self._client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, force_close=False),
            timeout=aiohttp.ClientTimeout(total=None),
            trust_env=False,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def deliver(self, request: OutboundRequest) -> DeliveryResult:
        if self._client is None:
            raise RuntimeError("HttpDeliverer.start() was not awaited")
        try:
            async with self._client.request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.body or None,
                allow_redirects=False,
                skip_auto_headers=_SKIP_AUTO_HEADERS,
            ) as resp:
                await _drain(resp)
                # resp.headers stays readable (case-insensitively) after the body is drained.
                return DeliveryResult(resp.status, resp.reason or "", resp.headers)
        except (aiohttp.ClientError, ValueError) as exc:
            raise Unreachable(
                f"Could not reach {request.url}: {type(exc).__name__}: {exc}"
            ) from exc


async def _drain(resp: aiohttp.ClientResponse) -> None:
    """Read and discard the worker's response body, at most 1 MiB of it.

    Reading lets the connection be reused; a worker streaming an endless body
    only loses its connection instead of filling the emulator's memory.
    """
    remaining = _MAX_DRAIN_BYTES
    while remaining > 0:
        chunk = await resp.content.read(min(remaining, 65536))
        if not chunk:
            return
        remaining -= len(chunk)
    resp.close()
