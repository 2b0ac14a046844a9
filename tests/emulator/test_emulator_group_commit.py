"""Group commit of CreateTask with --data: calls arriving together share one
transaction, each is answered only once its row is in the file, a failed commit
acknowledges nothing, and the durability mode is the one documented.

In-process (emulator.store.Store under the Harness); the kill -9 proof over gRPC
is in test_emulator_persistence.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from google.cloud import tasks_v2

from emulator.store import Store
from tests.emulator.inproc import Harness

URL = "http://127.0.0.1:1/ok"


def _request(queue: str, task_id: str | None = None) -> Any:
    task: dict[str, Any] = {"http_request": {"url": URL, "body": b"x"}}
    if task_id is not None:
        task["name"] = f"{queue}/tasks/{task_id}"
    return tasks_v2.CreateTaskRequest.pb()(parent=queue, task=tasks_v2.Task(**task)._pb)


def _stored(path: Path, name: str) -> bool:
    """Whether another connection (another process, as after a restart) sees the row."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return bool(
            db.execute("SELECT count(*) FROM tasks WHERE name = ?", (name,)).fetchone() == (1,)
        )


async def test_concurrent_creates_share_one_commit_and_are_answered_after_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "emu.db"
    store = Store(path)
    async with Harness(store=store) as h:
        queue = h.create_queue()
        h.pause(queue)
        statements: list[str] = []
        store._db.set_trace_callback(statements.append)

        async def create(i: int) -> bool:
            created = await h.emulator.create_task_grouped(_request(queue, f"t{i}"))
            return _stored(path, created.name)  # checked the moment the call is answered

        answered = await asyncio.gather(*(create(i) for i in range(20)))
        store._db.set_trace_callback(None)
        assert answered == [True] * 20
        assert [s for s in statements if s.startswith("BEGIN")] == ["BEGIN"], statements
        # A lone call is committed alone, at once: no timer gathers a group.
        lone = await asyncio.wait_for(h.emulator.create_task_grouped(_request(queue)), 1)
        assert _stored(path, lone.name)


async def test_a_failed_group_commit_acknowledges_nothing_and_keeps_nothing(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "emu.db")
    async with Harness(store=store) as h:
        queue = h.create_queue()
        store._db.execute("PRAGMA query_only = ON")  # every write now fails
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await h.emulator.create_task_grouped(_request(queue, "named"))
        name = f"{queue}/tasks/named"
        assert not h.exists(name)  # neither listed nor dispatched
        await h.advance(5)
        assert h.deliverer.for_task(name) == []
        store._db.execute("PRAGMA query_only = OFF")
        # The name was never acknowledged, so it is free (no ALREADY_EXISTS, no tombstone).
        created = await h.emulator.create_task_grouped(_request(queue, "named"))
        assert created.name == name
        await h.advance(1)
        assert len(h.deliverer.for_task(name)) == 1


async def test_a_caller_gone_before_the_commit_still_has_its_task_stored_and_run(
    tmp_path: Path,
) -> None:
    path = tmp_path / "emu.db"
    async with Harness(store=Store(path)) as h:
        queue = h.create_queue()
        call = asyncio.ensure_future(h.emulator.create_task_grouped(_request(queue, "gone")))
        await asyncio.sleep(0)  # the call waits for the group commit
        call.cancel()  # e.g. the client's deadline passed
        with pytest.raises(asyncio.CancelledError):
            await call
        await h.advance(1)
        name = f"{queue}/tasks/gone"
        assert _stored(path, name) or not h.exists(name)  # stored, and run (then deleted)
        assert len(h.deliverer.for_task(name)) == 1


async def test_a_write_of_another_kind_commits_the_waiting_rows_first(tmp_path: Path) -> None:
    path = tmp_path / "emu.db"
    store = Store(path)
    async with Harness(store=store) as h:
        queue = h.create_queue()
        h.pause(queue)
        pending = asyncio.ensure_future(h.emulator.create_task_grouped(_request(queue, "a")))
        await asyncio.sleep(0)  # the call ran up to its wait for the group commit
        h.delete_task(f"{queue}/tasks/a")  # a plain write, before the group commit ran
        await pending
        # Had the delete reached the file first, the insert would have resurrected the task.
        assert not _stored(path, f"{queue}/tasks/a")


@pytest.mark.parametrize(("fsync", "mode"), [(False, 1), (True, 2)])
def test_synchronous_is_normal_by_default_and_full_with_fsync(
    tmp_path: Path, fsync: bool, mode: int
) -> None:
    # NORMAL (1) in WAL mode survives kill -9 of the process; FULL (2) also power loss.
    store = Store(tmp_path / "emu.db", fsync=fsync)
    try:
        assert store._db.execute("PRAGMA synchronous").fetchone() == (mode,)
        assert store._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        store.close()
