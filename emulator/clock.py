"""The emulator's only source of time: a :class:`Clock` protocol, the real clock and a fake one.

Every other module asks an injected clock for wall time (``now``: task
schedule times, tombstone expiry, the timestamps of the API), monotonic time
(``monotonic``: the token bucket) and for waiting (``sleep``, and ``wait``: an
asyncio Event or a timeout, whichever comes first). :class:`RealClock` reads
``time`` and uses the event loop's timers; :class:`FakeClock` only moves when a
test calls :meth:`FakeClock.advance`, so retry, backoff, rate and deadline
semantics can be tested in milliseconds without sleeping.

It deliberately schedules nothing itself and knows nothing about queues.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from typing import Any, Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for rates and intervals)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait(self, event: asyncio.Event, limit: float | None) -> bool:
        """Wait until ``event`` is set (True) or ``limit`` seconds passed (False).

        ``None`` waits for the event alone.
        """
        ...


class RealClock:
    """``time.time``/``time.monotonic`` and the running event loop's timers."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, limit: float | None) -> bool:
        try:
            async with asyncio.timeout(limit):
                await event.wait()
        except TimeoutError:
            return False
        return True


class FakeClock:
    """A clock that stands still until :meth:`advance`; for in-process tests.

    Wall and monotonic time move together, in whole nanoseconds so that
    monotonic differences are exact and a timer always moves time forward (a
    wait of 1e-12 s still lasts 1 ns). Waiters whose deadline is reached are
    woken in deadline order, and the event loop is given turns after each one,
    so what a wake-up schedules (an attempt, a retry) happens "at" that instant
    before time moves on.
    """

    def __init__(self, start: float = 1_800_000_000.0, *, settle_turns: int = 40) -> None:
        self._ns = round(start * 1e9)
        self._start_ns = self._ns
        self._settle_turns = settle_turns
        self._timers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()

    def now(self) -> float:
        return self._ns / 1e9

    def monotonic(self) -> float:
        return (self._ns - self._start_ns) / 1e9

    def _timer(self, seconds: float) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if seconds <= 0:
            future.set_result(None)
        else:
            due = self._ns + max(1, math.ceil(seconds * 1e9))
            heapq.heappush(self._timers, (due, next(self._ids), future))
        return future

    async def sleep(self, seconds: float) -> None:
        await self._timer(seconds)

    async def wait(self, event: asyncio.Event, limit: float | None) -> bool:
        if event.is_set():
            return True
        if limit is None:
            await event.wait()
            return True
        timer = self._timer(limit)
        waiter: asyncio.Future[bool] = asyncio.ensure_future(event.wait())
        pending: set[asyncio.Future[Any]] = {timer, waiter}
        try:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            timer.cancel()
        return event.is_set()

    async def settle(self) -> None:
        """Give the event loop turns so everything runnable at this instant runs."""
        for _ in range(self._settle_turns):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing every timer due on the way."""
        target = self._ns + round(seconds * 1e9)
        await self.settle()
        while self._timers and self._timers[0][0] <= target:
            due, _, future = heapq.heappop(self._timers)
            self._ns = max(self._ns, due)
            if not future.done():
                future.set_result(None)
            await self.settle()
        self._ns = max(self._ns, target)
        await self.settle()
