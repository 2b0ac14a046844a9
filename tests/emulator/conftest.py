"""Fixtures for the emulator tests: the core in-process, a real emulator process, an HTTP target.

``async def`` tests run on a fresh event loop (see :func:`pytest_pyfunc_call`);
their :class:`~tests.emulator.inproc.Harness` arguments are started before and
closed after the test. The queues the process fixtures create are deleted at
teardown, so no retry of one test runs on into another. The HTTP target is
described in tests/emulator/support.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from google.api_core import exceptions

from emulator.testing import EmulatorProcess
from tests.emulator.inproc import Harness
from tests.emulator.support import Target, serve_target

PARENT = "projects/emu-test/locations/us-central1"
_ids = itertools.count(1)


@pytest.fixture
def target() -> Iterator[Target]:
    with serve_target() as t:
        yield t


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorProcess]:
    with EmulatorProcess() as process:
        yield process


@pytest.fixture(scope="module")
def client(emu: EmulatorProcess) -> Any:
    return emu.client("grpc")


@pytest.fixture(scope="module")
def rest_client(emu: EmulatorProcess) -> Any:
    return emu.client("rest")


def unique(prefix: str = "q") -> str:
    return f"{prefix}-{int(time.time() * 1000) % 10**8}-{next(_ids)}"


@pytest.fixture
def make_queue(client: Any) -> Iterator[Callable[..., str]]:
    """Factory: ``make_queue(rate_limits={...}, retry_config={...})`` -> queue name.

    Every queue it made is deleted at teardown, with its tasks.
    """
    made: list[str] = []

    def make(**fields: Any) -> str:
        name = f"{PARENT}/queues/{unique()}"
        client.create_queue(parent=PARENT, queue={"name": name, **fields})
        made.append(name)
        return name

    yield make
    for name in made:
        with contextlib.suppress(exceptions.NotFound):
            client.delete_queue(name=name)


@pytest.fixture
def queue_name(make_queue: Callable[..., str]) -> str:
    """A fresh RUNNING queue with default settings (deleted at teardown)."""
    return make_queue()


# -- the core in-process ------------------------------------------------------------


@pytest.fixture
def core() -> Harness:
    """The emulator core on a fake clock with an in-process deliverer."""
    return Harness()


@pytest.fixture
def short_tombstones() -> Harness:
    """Like :func:`core`, with task names reserved for 1 s only."""
    return Harness(tombstone_seconds=1)


async def _run_async(test: Callable[..., Awaitable[None]], kwargs: dict[str, Any]) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for value in kwargs.values():
            if isinstance(value, Harness):
                await value.start()
                stack.push_async_callback(value.close)
        await test(**kwargs)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests with ``asyncio.run`` (no asyncio plugin needed)."""
    test = pyfuncitem.obj
    if not inspect.iscoroutinefunction(test):
        return None
    names = inspect.signature(test).parameters
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    asyncio.run(_run_async(test, kwargs))
    return True


@pytest.fixture
def parent() -> str:
    return PARENT
