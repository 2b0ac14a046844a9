"""A stack's local data: reset it, export it, import it.

The emulator keeps every queue, task and reserved task name in one SQLite file,
``.devstack/<stack>/emulator.db`` (WAL mode). A team shares a reproducible
starting state by exporting that file once and importing it on each machine,
like the Firebase emulators' ``--export-on-exit`` / ``--import``:

- ``export`` takes a consistent copy with SQLite's online backup API, so it
  works while the stack runs and never copies a half-written page;
- ``import`` and ``reset`` refuse while the stack is up (the running emulator
  holds the file) and never leave a half-copied file in place: ``import``
  checks the file is an emulator database first, then swaps it in atomically.

Tasks carry the worker URL they were created with, so an export is meant for
the same stack name (whose ports are remembered: `devstack.ports`).
Deliberately not here: reading or changing what is in the file (the emulator
owns its schema; only its table names are checked).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from devstack.state import StackPaths, StateError

EMULATOR_TABLES = frozenset({"meta", "queues", "tasks", "tombstones"})
_SIDE_FILES = ("-wal", "-shm", "-journal")


def _data_files(path: Path) -> list[Path]:
    return [path, *(path.with_name(path.name + suffix) for suffix in _SIDE_FILES)]


def export_data(paths: StackPaths, target: Path) -> int:
    """Copy the stack's emulator data to target (a new SQLite file); returns the task count."""
    source = paths.emulator_data
    if not source.is_file():
        raise StateError(f"stack {paths.stack!r} has no data yet ({source}): run `up` first")
    if target.exists():
        raise StateError(f"{target} exists: choose a new file name (nothing was written)")
    tmp = target.with_name(target.name + ".tmp")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
            (count,) = dst.execute("SELECT count(*) FROM tasks").fetchone()
        finally:
            dst.close()
    finally:
        src.close()
    os.replace(tmp, target)
    return int(count)


def _check_emulator_database(source: Path) -> int:
    """The task count of an emulator database; StateError when source is not one."""
    try:
        db = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            missing = EMULATOR_TABLES - tables
            if missing:
                raise StateError(
                    f"{source} is not an emulator export (no table {', '.join(sorted(missing))}); "
                    "make one with `python -m devstack export FILE`"
                )
            (count,) = db.execute("SELECT count(*) FROM tasks").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise StateError(f"{source} is not an SQLite database ({exc})") from None
    return int(count)


def import_data(paths: StackPaths, source: Path) -> int:
    """Replace the stack's emulator data with source (an export); returns the task count."""
    if not source.is_file():
        raise StateError(f"{source}: no such file")
    count = _check_emulator_database(source)
    paths.ensure()
    tmp = paths.emulator_data.with_name(paths.emulator_data.name + ".import")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    for stale in _data_files(paths.emulator_data)[1:]:
        stale.unlink(missing_ok=True)
    os.replace(tmp, paths.emulator_data)
    return count


def reset_data(paths: StackPaths) -> bool:
    """Delete the stack's emulator data; False when there was none."""
    existed = paths.emulator_data.exists()
    for path in _data_files(paths.emulator_data):
        path.unlink(missing_ok=True)
    return existed
