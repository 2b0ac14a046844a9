"""What a ``--data`` file is, decided read-only before the emulator writes a byte to it.

:func:`inspect` opens an existing file with SQLite's read-only URI mode
(https://www.sqlite.org/uri.html, ``mode=ro``) and answers :data:`NEW` (no file,
or an SQLite database with no tables: safe to initialise), :data:`OURS` (a
database the emulator made: it carries :data:`APPLICATION_ID` in its header,
https://www.sqlite.org/pragma.html#pragma_application_id, or is an older
emulator file with exactly the emulator's tables), or raises ValueError with a
message naming the file, the problem and how to recover. It refuses:

* another program's database (other tables, other columns, another application id);
* a file that is not SQLite, or whose pages are damaged (``PRAGMA quick_check``);
* a 0-byte file, and an emulator database missing one of its tables: both look
  like a file that once held data, so starting empty would silently lose it.

Deliberately no writes and no schema: emulator/store.py creates and migrates.
"""

from __future__ import annotations

import contextlib
import shlex
import sqlite3
from pathlib import Path
from typing import Final
from urllib.parse import quote

# "CTE1" in ASCII: the emulator's mark in the database header.
APPLICATION_ID: Final = 0x43544531
NEW: Final = "new"
OURS: Final = "ours"

# Every column the store reads, per table the emulator owns.
COLUMNS: Final[dict[str, tuple[str, ...]]] = {
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
# Added later than the others: an older emulator file may lack it.
OPTIONAL_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "quarantine": ("kind", "name", "data", "reason", "at"),
}
_RECOVER: Final = (
    "to save what is readable, run `sqlite3 {path} .recover | sqlite3 NEW.db` and pass "
    "--data NEW.db; or move the file away to start with an empty emulator"
)


def _foreign(path: Path, why: str) -> ValueError:
    return ValueError(
        f"the data file {path} is not an emulator database ({why}): pass --data with a new "
        "file path, or move that file away to start with an empty emulator; nothing was "
        "written to it"
    )


def damaged(path: Path, why: str) -> ValueError:
    return ValueError(
        f"the data file {path} is damaged ({why}); " + _RECOVER.format(path=shlex.quote(str(path)))
    )


def _columns(db: sqlite3.Connection, table: str) -> tuple[str, ...]:
    # Table names come from sqlite_master of this file; quoted as identifiers.
    quoted = '"' + table.replace('"', '""') + '"'
    return tuple(str(r[1]) for r in db.execute(f"PRAGMA table_info({quoted})"))


def _classify(db: sqlite3.Connection, path: Path) -> str:
    (app_id,) = db.execute("PRAGMA application_id").fetchone()
    if app_id not in (0, APPLICATION_ID):
        raise _foreign(path, f"it belongs to another program: application_id {app_id:#x}")
    problems = [str(r[0]) for r in db.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        raise damaged(path, "; ".join(problems)[:300])
    tables = {
        str(r[0])
        for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not str(r[0]).startswith("sqlite_")
    }
    if not tables and app_id == 0:
        return NEW  # an SQLite file with nothing in it yet
    known = {**COLUMNS, **OPTIONAL_COLUMNS}
    extra = sorted(tables - known.keys())
    if extra:
        raise _foreign(path, f"it has tables the emulator does not use: {', '.join(extra)[:200]}")
    for table in sorted(tables):
        if not set(known[table]) <= set(_columns(db, table)):
            raise _foreign(path, f"its table {table} lacks the emulator's columns")
    missing = sorted(COLUMNS.keys() - tables)
    if missing and app_id == 0:
        raise _foreign(path, f"it has no table {', '.join(missing)}")
    if missing:
        raise damaged(
            path, f"an emulator database without its table {', '.join(missing)}: it once held data"
        )
    return OURS


def inspect(path: Path) -> str:
    """:data:`NEW` or :data:`OURS`; ValueError (with how to recover) for anything else."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return NEW
    except OSError as exc:
        raise ValueError(
            f"cannot read the data file {path}: {exc.strerror}; pass --data with a file path"
        ) from None
    if not path.is_file():
        raise ValueError(
            f"the data file {path} is not a regular file: pass --data with a file path"
        )
    wal = path.with_name(path.name + "-wal")
    if size == 0 and not (wal.is_file() and wal.stat().st_size > 0):
        raise ValueError(
            f"the data file {path} is empty (0 bytes): an emulator database never is, so it "
            "was truncated or is not the emulator's. Restore it from a backup, or delete it "
            "to start with an empty emulator"
        )
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            return _classify(db, path)
    except sqlite3.DatabaseError as exc:
        name = getattr(exc, "sqlite_errorname", "")
        if name == "SQLITE_NOTADB":
            raise _foreign(path, f"not an SQLite database: {exc}") from None
        if name == "SQLITE_CORRUPT" or "malformed" in str(exc):
            raise damaged(path, str(exc)) from None
        raise ValueError(
            f"cannot read the data file {path}: {exc}; pass --data with a readable file path"
        ) from None
