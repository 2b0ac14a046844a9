"""The fake clock tests rely on: it stands still, wakes waiters in order, never stalls."""

from __future__ import annotations

import asyncio

from emulator.clock import FakeClock, RealClock


async def test_fake_clock_stands_still_until_advanced() -> None:
    clock = FakeClock(start=100.0)
    woke: list[float] = []

    async def sleeper(seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(clock.monotonic())

    tasks = [asyncio.create_task(sleeper(s)) for s in (3, 1, 2)]
    await clock.settle()
    assert (clock.now(), woke) == (100.0, [])
    await clock.advance(2.5)
    assert woke == [1, 2]
    assert clock.now() == 102.5
    await clock.advance(1)
    assert woke == [1, 2, 3]
    await asyncio.gather(*tasks)


async def test_fake_wait_returns_on_the_event_or_the_limit() -> None:
    clock = FakeClock()
    event = asyncio.Event()
    timed_out = asyncio.create_task(clock.wait(event, 5))
    await clock.advance(5)
    assert await timed_out is False
    woken = asyncio.create_task(clock.wait(event, 5))
    await clock.settle()
    event.set()
    await clock.settle()
    assert await woken is True
    assert await clock.wait(event, None) is True


async def test_a_tiny_wait_still_moves_time_forward() -> None:
    clock = FakeClock()
    before = clock.monotonic()
    waiter = asyncio.create_task(clock.sleep(1e-12))
    await clock.advance(1e-9)
    await waiter
    assert clock.monotonic() > before


async def test_real_clock_wait_times_out_and_wakes() -> None:
    clock = RealClock()
    event = asyncio.Event()
    assert await clock.wait(event, 0.001) is False
    event.set()
    assert await clock.wait(event, None) is True
    assert clock.now() > 1e9
    assert clock.monotonic() >= 0
