"""Retries across an emulator restart: every task created exactly once, by name."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from emulator.testing import EmulatorProcess
from enqueue import (
    AsyncEnqueuer,
    BulkItem,
    BulkSummary,
    Enqueuer,
    RetryPolicy,
    TaskOutcome,
    TaskSpec,
    enqueue_many,
    read_jsonl,
    task_id_for_key,
)
from enqueue.bulk import FailureWriter
from tests.enqueue.conftest import make_queue, outputs_for, task_names

pytestmark = pytest.mark.integration
NO_ENV: dict[str, str] = {}
PATIENT = RetryPolicy(initial=0.05, maximum=0.5, deadline=30, max_attempts=100, attempt_timeout=5)


@pytest.fixture
def persistent_emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(data=tmp_path / "tasks.sqlite") as emu:
        yield emu


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_bulk_survives_a_restart(
    persistent_emulator: EmulatorProcess, kill: bool, tmp_path: Path
) -> None:
    """The emulator goes down with creates in flight and comes back while the
    rest of the run retries. Whatever could not be retried (the emulator answers
    CANCELLED to calls that reach it while it shuts down on SIGTERM) lands in the
    failures file with its name, and feeding that file back completes the run:
    in the end every task exists exactly once."""
    emu = persistent_emulator
    queue = make_queue(emu, paused=True)
    outputs = outputs_for(emu, queue, "http://127.0.0.1:9")
    count, stop_at = 600, 200
    restarter: list[threading.Thread] = []

    def specs() -> Iterator[TaskSpec]:
        for i in range(count):
            if i == stop_at:
                emu.kill() if kill else emu.stop()
                thread = threading.Thread(target=emu.restart)
                thread.start()
                restarter.append(thread)
            if i % 2:
                yield TaskSpec(type="bulk", data={"i": i}, key=f"k{i}")
            else:
                yield TaskSpec(type="bulk", data={"i": i})

    outcomes: list[TaskOutcome] = []
    failures = FailureWriter(tmp_path / "failures.jsonl")

    def record(outcome: TaskOutcome) -> None:
        outcomes.append(outcome)
        if outcome.status == "failed":
            failures.write(outcome)

    async def run(items: Iterable[TaskSpec | BulkItem]) -> BulkSummary:
        async with AsyncEnqueuer(outputs, env=NO_ENV, retry=PATIENT) as enqueuer:
            return await enqueue_many(enqueuer, items, concurrency=16, on_outcome=record)

    first = asyncio.run(run(specs()))
    restarter[0].join(timeout=30)
    failures.close()
    assert any(o.attempts > 1 for o in outcomes), "the restart should have forced retries"
    assert first.total == count
    second = BulkSummary()
    if first.failed:
        with failures.path.open("rb") as stream:
            second = asyncio.run(run(read_jsonl(stream)))
    assert [o.reason for o in second.failed] == []
    assert second.total == len(first.failed)

    names = task_names(emu, queue)
    assert len(names) == count, "every task exactly once"
    assert set(names) == {o.name for o in outcomes if o.status != "failed"}
    keyed = {f"{queue}/tasks/{task_id_for_key('bulk', f'k{i}')}" for i in range(1, count, 2)}
    assert keyed <= set(names)


def test_send_waits_for_the_emulator_to_come_back(persistent_emulator: EmulatorProcess) -> None:
    emu = persistent_emulator
    queue = make_queue(emu, paused=True)
    with Enqueuer(outputs_for(emu, queue, "http://127.0.0.1:9"), env=NO_ENV, retry=PATIENT) as enq:
        enq.send("warmup")
        emu.stop()
        thread = threading.Timer(1.0, emu.restart)
        thread.start()
        result = enq.enqueue(TaskSpec(type="late", key="late-1"))
        thread.join(timeout=30)
    assert result.attempts > 1
    assert result.name in task_names(emu, queue)
