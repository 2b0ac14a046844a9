"""The emulator's only source of time: a :class:`Clock` protocol, the real clock and a fake one.

Every other module asks an injected clock for wall time (``now``: task
schedule times, tombstone expiry, the timestamps of the API), monotonic time
(``monotonic``: the token bucket), the issue time of ID tokens (``token_time``)
and for waiting (``sleep``, and ``wait``: an asyncio Event or a timeout,
whichever comes first). :class:`RealClock` reads ``time`` and uses the event
loop's timers; :class:`FakeClock` only moves when a test calls
:meth:`FakeClock.advance`, so retry, backoff, rate and deadline semantics can be
tested in milliseconds without sleeping. :class:`ManualClock` is the running
emulator's ``--manual-clock``: a fake clock that starts at the real time, moves
by an admin call, and lets real HTTP deliveries finish between its steps.

It deliberately schedules nothing itself and knows nothing about queues.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for rates and intervals)."""
        ...

    def token_time(self) -> float:
        """The issue time stamped on ID tokens: what the worker's clock will accept."""
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

    def token_time(self) -> float:
        return time.time()

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

    _slack_ns = 0  # timers this far past the target fire too (see ManualClock)

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

    def token_time(self) -> float:
        return self.now()  # in-process tests verify tokens against the same fake time

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
        while self._timers and self._timers[0][0] <= target + self._slack_ns:
            due, _, future = heapq.heappop(self._timers)
            self._ns = max(self._ns, due)
            if not future.done():
                future.set_result(None)
            await self.settle()
        self._ns = max(self._ns, target)
        await self.settle()


class ManualClock(FakeClock):
    """``--manual-clock``: time that moves only when told (``POST /emulator/v1/clock:advance``).

    It starts at the real time. :meth:`advance` fires every timer due on the way
    in order (schedule times, backoffs, dispatch deadlines, the token bucket,
    tombstone expiry all follow), and after each step waits for the attempts it
    started, which are real HTTP requests taking real time, through the
    ``quiesce`` hook the dispatcher installs; so a retry an attempt schedules
    within the advanced span also runs within it. That waiting is bounded by
    ``wait_limit`` real seconds per advance: an attempt still unanswered then
    keeps running (its dispatch deadline is on this clock too). ID tokens keep
    the real time, since the worker checks them against its own clock.
    """

    # A test advances to a schedule time it read from the API (whole microseconds);
    # the float arithmetic of a timer can put it a few ns later: it still fires.
    _slack_ns = 1_000

    def __init__(self, start: float | None = None, *, settle_turns: int = 40) -> None:
        super().__init__(time.time() if start is None else start, settle_turns=settle_turns)
        self.quiesce: Callable[[float], Awaitable[None]] | None = None
        self._wait_until: float | None = None
        self._advancing = asyncio.Lock()

    def token_time(self) -> float:
        return time.time()

    async def settle(self) -> None:
        await super().settle()
        if self.quiesce is not None and self._wait_until is not None:
            remaining = self._wait_until - time.monotonic()
            if remaining > 0:
                await self.quiesce(remaining)
                await super().settle()

    async def advance(self, seconds: float, *, wait_limit: float = 30.0) -> None:
        async with self._advancing:  # two admin calls at once advance one after the other
            self._wait_until = time.monotonic() + wait_limit
            try:
                await super().advance(seconds)
            finally:
                self._wait_until = None
