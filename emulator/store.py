"""SQLite persistence for queues, tasks, attempt state, tombstones and the OIDC key.

Durability, stated exactly. The database runs in WAL mode and every write
commits before the API call that caused it is answered. By default it runs
with ``synchronous=NORMAL``: COMMIT returns once the transaction is in the WAL
file (the operating system's page cache), without an fsync, so an acknowledged
write survives ``kill -9`` and any crash of the emulator process, but an OS
crash or power loss may undo the last commits (the file stays consistent;
https://www.sqlite.org/pragma.html#pragma_synchronous: "A transaction committed
in WAL mode with synchronous=NORMAL might roll back following a power loss or
system crash"). With ``fsync=True`` (``--fsync``) it runs with
``synchronous=FULL``: every commit is fsynced before the call is answered, so
acknowledged writes also survive power loss.

CreateTask over gRPC uses group commit (:meth:`Store.put_task_grouped`): the
rows of the calls that arrive in one turn of the event loop are committed in
one transaction at the end of that turn, and each call is answered only after
that commit. Nothing waits on a timer, so a lone client is not delayed; under
``--fsync`` one fsync covers the whole group. Every other write first commits
the rows still waiting, so writes reach the file in the order they were made.

Dispatch progress is written when an attempt fails (the retry schedule) and
when a task is removed, never with an fsync of its own (see ``Store._sync``);
an attempt that was in flight when the process died is simply delivered again
after a restart, which is the at-least-once contract Cloud Tasks gives too.

Before writing, the file is inspected read-only (emulator/store_check.py): only
a new file, an empty SQLite file or an emulator database is used. A new file is
created 0600 (its directory 0700): it holds the key that signs ID tokens. A
row that cannot be read is moved to the ``quarantine`` table with the reason
(and a warning), so one damaged row never makes the other rows unusable.

This module deliberately holds no scheduling logic: it stores bytes and
numbers, the core decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, NamedTuple

from emulator import store_check

log = logging.getLogger("emulator.store")

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
CREATE TABLE IF NOT EXISTS quarantine (kind TEXT, name, data, reason TEXT, at REAL);
"""
# A row the emulator cannot read is moved to the quarantine table, for inspection.
_TABLES: Final = {
    "queue": ("queues", "data"),
    "task": ("tasks", "data"),
    "tombstone": ("tombstones", "expires"),
}


TaskRow = tuple[int, str, str, bytes, int, int, float | None, int | None]


class StoredTask(NamedTuple):
    """A task row, its fields in the column order of ``_PUT_TASK`` (a tuple: no copy
    on the way to SQLite, which stores ``named`` as 0 or 1)."""

    name: str
    queue: str
    data: bytes
    named: bool
    execution_count: int
    first_attempt_at: float | None
    previous_response: int | None


class Store:
    """One SQLite file; every method commits before returning, except
    :meth:`put_task_grouped`, whose future completes once its row is committed."""

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        # Rows of put_task_grouped waiting for the group commit, and their futures.
        self._pending: list[tuple[StoredTask, asyncio.Future[None]]] = []
        # Read-only first: nothing is written to a file that is not the emulator's.
        if store_check.inspect(self.path) == store_check.NEW:
            self._create_private_file()
        self._restrict_mode()
        self._lock_fd = self._lock()
        try:
            self._db = sqlite3.connect(str(self.path), isolation_level=None)
        except sqlite3.Error as exc:
            os.close(self._lock_fd)
            raise ValueError(
                f"cannot open the emulator data file {self.path}: {exc}; "
                "pass --data with a writable file path"
            ) from exc
        # A damaged text column comes back as bytes (and its row is quarantined)
        # instead of failing the whole query.
        self._db.text_factory = _text
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={self._synchronous}")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA application_id = {store_check.APPLICATION_ID}")
        except sqlite3.Error as exc:
            self._db.close()
            os.close(self._lock_fd)
            raise ValueError(
                f"cannot use the emulator data file {self.path}: {exc}; "
                "pass --data with a writable file path"
            ) from exc

    def _lock(self) -> int:
        """One emulator per data file: a second would start from a stale copy of the
        tasks and deliver the same ones again. An exclusive ``flock`` on the file, held
        until the process ends (the kernel drops it on kill -9 too); SQLite's own locks
        are POSIX record locks, which do not interfere with it."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise ValueError(
                f"cannot open the emulator data file {self.path}: {exc.strerror}; "
                "pass --data with a readable file path"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ValueError(
                f"the emulator data file {self.path} is in use by another emulator: stop "
                "that one first, or pass another --data file"
            ) from None
        return fd

    def _create_private_file(self) -> None:
        """The data file holds the OIDC signing key: owner-only (0600, directory 0700)."""
        try:
            if not self.path.parent.exists():
                self.path.parent.mkdir(mode=0o700, parents=True)
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        except OSError as exc:
            raise ValueError(
                f"cannot create the emulator data file {self.path}: {exc.strerror}; "
                "pass --data with a writable file path"
            ) from None

    def _restrict_mode(self) -> None:
        # SQLite gives its -wal and -shm files the database file's mode.
        for path in (
            self.path,
            *(self.path.with_name(self.path.name + s) for s in ("-wal", "-shm")),
        ):
            try:
                mode = path.stat().st_mode & 0o777
                if mode & 0o077:
                    os.chmod(path, 0o600)
                    log.warning("%s was readable by other users (%o): made it 0600", path, mode)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ValueError(
                    f"cannot make the emulator data file {path} private: {exc.strerror}; "
                    "it holds the key that signs ID tokens"
                ) from None

    @property
    def _synchronous(self) -> str:
        return "FULL" if self.fsync else "NORMAL"

    def close(self) -> None:
        self.commit_pending()
        self._db.close()
        os.close(self._lock_fd)  # releases the flock

    # -- group commit ---------------------------------------------------------
    def put_task_grouped(self, task: StoredTask) -> asyncio.Future[None]:
        """Write ``task`` in the next group commit; the future completes once it is
        committed (or fails with the commit's error). Must run on the event loop."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((task, done))
        if len(self._pending) == 1:
            # After the calls already ready in this turn of the loop: no timer.
            loop.call_soon(self.commit_pending)
        return done

    def commit_pending(self) -> None:
        """Commit the rows waiting for a group commit, in one transaction."""
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(_PUT_TASK, [task for task, _ in batch])
        except Exception as exc:  # sqlite3.Error, OSError: each waiting call answers it
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        for _, done in batch:
            if not done.done():
                done.set_result(None)

    # -- meta ---------------------------------------------------------------
    def get_meta(self, key: str) -> bytes | None:
        """The value stored under ``key``; TypeError when it is not a blob."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        if not isinstance(row[0], bytes):
            raise TypeError(f"the stored value is {type(row[0]).__name__}, not bytes")
        return row[0]

    def put_meta(self, key: str, value: bytes) -> None:
        self.commit_pending()
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- queues -------------------------------------------------------------
    def put_queue(self, name: str, data: bytes) -> None:
        self.commit_pending()
        self._db.execute("INSERT OR REPLACE INTO queues (name, data) VALUES (?, ?)", (name, data))

    def delete_queue(self, name: str, tombstone_until: float | None = None) -> None:
        self.commit_pending()
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM tasks WHERE queue = ?", (name,))
            self._db.execute("DELETE FROM queues WHERE name = ?", (name,))
            if tombstone_until is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO tombstones (name, expires) VALUES (?, ?)",
                    (name, tombstone_until),
                )

    def load_queues(self, now: float) -> list[tuple[int, str, bytes]]:
        """(rowid, name, data) of every readable queue row; others are quarantined."""
        rows = []
        for rowid, name, data in self._db.execute(
            "SELECT rowid, name, data FROM queues"
        ).fetchall():
            if isinstance(name, str) and isinstance(data, bytes):
                rows.append((int(rowid), name, data))
            else:
                self.quarantine("queue", rowid, "the row's name or data has the wrong type", now)
        return rows

    def quarantine(self, kind: str, rowid: int, reason: str, now: float) -> None:
        """Move an unreadable row out of its table into ``quarantine``, with the reason."""
        table, column = _TABLES[kind]
        log.warning(
            "data file %s: skipped an unreadable %s (row %d of table %s): %s; it was moved "
            "to the table quarantine for inspection",
            self.path,
            kind,
            rowid,
            table,
            reason,
        )
        with self._db:
            self._db.execute("BEGIN")
            # Table and column names from _TABLES only, never from input.
            self._db.execute(
                f"INSERT INTO quarantine (kind, name, data, reason, at) "  # noqa: S608
                f"SELECT ?, name, {column}, ?, ? FROM {table} WHERE rowid = ?",
                (kind, reason, now, rowid),
            )
            self._db.execute(f"DELETE FROM {table} WHERE rowid = ?", (rowid,))  # noqa: S608

    def quarantined(self) -> list[tuple[str, Any, str]]:
        """(kind, name, reason) of every quarantined row."""
        return [
            (str(k), n, str(r))
            for k, n, r in self._db.execute("SELECT kind, name, reason FROM quarantine")
        ]

    # -- tasks --------------------------------------------------------------
    def put_task(self, task: StoredTask, *, fsync: bool = True) -> None:
        self.commit_pending()
        with self._sync(fsync):
            self._db.execute(_PUT_TASK, task)

    def delete_task(self, name: str, tombstone_until: float | None) -> None:
        self.commit_pending()
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
        self.commit_pending()
        with self._sync(fsync), self._db:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM tasks WHERE name = ?", [(n,) for n in names])
            self._db.executemany(
                "INSERT OR REPLACE INTO tombstones (name, expires) VALUES (?, ?)", tombstones
            )

    @contextlib.contextmanager
    def _sync(self, fsync: bool) -> Iterator[None]:
        """``fsync=False`` commits without fsync (synchronous=NORMAL) even under ``--fsync``.

        Used for dispatch outcomes (a task done, a retry scheduled): in WAL mode
        such a commit still survives kill -9, only an OS crash or power loss
        could undo it, and then the task is merely delivered again (at least
        once). One fsync per delivery would cap the emulator near 360/s.
        """
        if fsync or not self.fsync:
            yield
            return
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            yield
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    def load_tasks(self, now: float) -> Iterator[TaskRow]:
        """Every task row whose columns have the right types; others are quarantined
        once the rows have been read.

        Plain tuples, (rowid, name, queue, data, named, execution_count,
        first_attempt_at, previous_response), read in chunks, so a million rows
        load in seconds and never sit in memory twice. Text is decoded in C; only
        from a row whose text is not UTF-8 on does the Python text factory (which
        lets such a row be quarantined) read the rest.
        """
        wrong_type: list[int] = []
        after: int | None = None  # the rowid of the last row read
        factory: Any = str
        while True:
            self._db.text_factory = factory
            try:
                cursor = (
                    self._db.execute(_LOAD_TASKS + " ORDER BY rowid")
                    if after is None
                    else self._db.execute(_LOAD_TASKS + " WHERE rowid > ? ORDER BY rowid", (after,))
                )
                while chunk := cursor.fetchmany(_LOAD_CHUNK):
                    for row in chunk:
                        if _task_row_ok(row):
                            yield row
                        else:
                            wrong_type.append(row[0])
                    after = chunk[-1][0]
                break
            except sqlite3.OperationalError:  # "Could not decode to UTF-8 column ..."
                if factory is _text:
                    raise
                factory = _text
            finally:
                self._db.text_factory = _text
        for rowid in wrong_type:
            self.quarantine("task", rowid, "a column of the row has the wrong type", now)

    # -- tombstones ---------------------------------------------------------
    def load_tombstones(self, now: float) -> list[tuple[str, float]]:
        loaded = []
        rows = self._db.execute("SELECT rowid, name, expires FROM tombstones").fetchall()
        for rowid, name, expires in rows:
            if isinstance(name, str) and isinstance(expires, int | float):
                loaded.append((name, float(expires)))
            else:
                self.quarantine(
                    "tombstone", rowid, "the row's name or expiry has the wrong type", now
                )
        return loaded

    def clear_tombstones(self) -> None:
        self.commit_pending()
        self._db.execute("DELETE FROM tombstones")

    def expire_tombstones(self, now: float) -> None:
        self.commit_pending()
        self._db.execute("DELETE FROM tombstones WHERE expires <= ?", (now,))


_LOAD_TASKS: Final = (
    "SELECT rowid, name, queue, data, named, execution_count, first_attempt_at,"
    " previous_response FROM tasks"
)
_LOAD_CHUNK: Final = 10_000
_PUT_TASK: Final = (
    "INSERT OR REPLACE INTO tasks (name, queue, data, named, execution_count,"
    " first_attempt_at, previous_response) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _text(raw: bytes) -> str | bytes:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


def _task_row_ok(r: TaskRow) -> bool:
    """rowid, name, queue, data, named, execution_count, first_attempt_at, previous_response."""
    return (
        type(r[1]) is str
        and type(r[2]) is str
        and type(r[3]) is bytes
        and type(r[4]) is int
        and type(r[5]) is int
        and r[5] >= 0
        and (r[6] is None or type(r[6]) is float or type(r[6]) is int)
        and (r[7] is None or type(r[7]) is int)
    )
