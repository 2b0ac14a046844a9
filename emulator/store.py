"""SQLite persistence for queues, tasks, attempt state, tombstones and the OIDC key.

The database runs in WAL mode with ``synchronous=FULL`` and every write commits
before the API call that caused it is answered, so a task acknowledged by
CreateTask survives ``kill -9``. Dispatch progress is written when an attempt
fails (the retry schedule) and when a task is removed, without an fsync of its
own (see ``Store._sync``); an attempt that was in flight when the process died
is simply delivered again after a restart, which is the at-least-once contract
Cloud Tasks gives too. This module deliberately
holds no scheduling logic: it stores bytes and numbers, the core decides.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS queues (name TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    name TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    data BLOB NOT NULL,
    named INTEGER NOT NULL,
    execution_count INTEGER NOT NULL DEFAULT 0,
    first_attempt_at REAL,
    previous_response INTEGER
);
CREATE INDEX IF NOT EXISTS tasks_by_queue ON tasks (queue);
CREATE TABLE IF NOT EXISTS tombstones (name TEXT PRIMARY KEY, expires REAL NOT NULL);
"""

# Every column the store reads, checked when an existing file is opened.
_COLUMNS = {
    "meta": ("key", "value"),
    "queues": ("name", "data"),
    "tasks": (
        "name",
        "queue",
        "data",
        "named",
        "execution_count",
        "first_attempt_at",
        "previous_response",
    ),
    "tombstones": ("name", "expires"),
}


@dataclass(frozen=True)
class StoredTask:
    name: str
    queue: str
    data: bytes
    named: bool
    execution_count: int
    first_attempt_at: float | None
    previous_response: int | None


class Store:
    """One SQLite file; all methods commit before returning."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(str(self.path), isolation_level=None)
        except sqlite3.Error as exc:
            raise ValueError(
                f"cannot open the emulator data file {self.path}: {exc}; "
                "pass --data with a writable file path"
            ) from exc
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            # A database of another program may hold tables of the same names.
            for table, columns in _COLUMNS.items():
                # Names from _COLUMNS only, never from input.
                self._db.execute(f"SELECT {', '.join(columns)} FROM {table} LIMIT 0")  # noqa: S608
        except sqlite3.Error as exc:
            self._db.close()
            raise ValueError(self._unusable(exc)) from exc

    def _unusable(self, exc: sqlite3.Error) -> str:
        if getattr(exc, "sqlite_errorname", "") in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or (
            isinstance(exc, sqlite3.OperationalError) and "no such column" in str(exc)
        ):
            return (
                f"the data file {self.path} is not an emulator database ({exc}): pass --data "
                "with a new file path, or move that file away to start with an empty emulator"
            )
        return (
            f"cannot use the emulator data file {self.path}: {exc}; "
            "pass --data with a writable file path"
        )

    def close(self) -> None:
        self._db.close()

    # -- meta ---------------------------------------------------------------
    def get_meta(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def put_meta(self, key: str, value: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- queues -------------------------------------------------------------
    def put_queue(self, name: str, data: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO queues (name, data) VALUES (?, ?)", (name, data))

    def delete_queue(self, name: str) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM tasks WHERE queue = ?", (name,))
            self._db.execute("DELETE FROM queues WHERE name = ?", (name,))

    def load_queues(self) -> list[tuple[str, bytes]]:
        return [(str(n), bytes(d)) for n, d in self._db.execute("SELECT name, data FROM queues")]

    # -- tasks --------------------------------------------------------------
    def put_task(self, task: StoredTask, *, fsync: bool = True) -> None:
        with self._sync(fsync):
            self._put_task(task)

    def _put_task(self, task: StoredTask) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO tasks (name, queue, data, named, execution_count,"
            " first_attempt_at, previous_response) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                task.name,
                task.queue,
                task.data,
                int(task.named),
                task.execution_count,
                task.first_attempt_at,
                task.previous_response,
            ),
        )

    def delete_task(self, name: str, tombstone_until: float | None) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM tasks WHERE name = ?", (name,))
            if tombstone_until is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO tombstones (name, expires) VALUES (?, ?)",
                    (name, tombstone_until),
                )

    def delete_tasks(
        self, names: list[str], tombstones: list[tuple[str, float]], *, fsync: bool = True
    ) -> None:
        with self._sync(fsync), self._db:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM tasks WHERE name = ?", [(n,) for n in names])
            self._db.executemany(
                "INSERT OR REPLACE INTO tombstones (name, expires) VALUES (?, ?)", tombstones
            )

    @contextlib.contextmanager
    def _sync(self, fsync: bool) -> Iterator[None]:
        """``fsync=False`` commits without fsync (synchronous=NORMAL).

        Used for dispatch outcomes (a task done, a retry scheduled): in WAL mode
        such a commit still survives kill -9, only an OS crash or power loss
        could undo it, and then the task is merely delivered again (at least
        once). One fsync per delivery would cap the emulator near 360/s.
        """
        if fsync:
            yield
            return
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            yield
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    def load_tasks(self) -> list[StoredTask]:
        rows = self._db.execute(
            "SELECT name, queue, data, named, execution_count, first_attempt_at,"
            " previous_response FROM tasks"
        )
        return [
            StoredTask(str(r[0]), str(r[1]), bytes(r[2]), bool(r[3]), int(r[4]), r[5], r[6])
            for r in rows
        ]

    # -- tombstones ---------------------------------------------------------
    def load_tombstones(self) -> list[tuple[str, float]]:
        return [
            (str(n), float(e)) for n, e in self._db.execute("SELECT name, expires FROM tombstones")
        ]

    def clear_tombstones(self) -> None:
        self._db.execute("DELETE FROM tombstones")

    def expire_tombstones(self, now: float) -> None:
        self._db.execute("DELETE FROM tombstones WHERE expires <= ?", (now,))
