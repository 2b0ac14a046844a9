"""What --data accepts: only the emulator's own database, privately, and a damaged
one never costs more than its damaged rows, never a traceback.

In-process (emulator.store.Store under the Harness) except the CLI checks.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from google.cloud import tasks_v2

from emulator.core import Emulator
from emulator.store import Store
from emulator.store_check import APPLICATION_ID
from tests.emulator.inproc import Harness

_NOISE = ("Traceback", "Unclosed", "never awaited", "Event loop is closed")


def _sql(path: Path, *statements: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        for statement in statements:
            db.execute(statement)
        db.commit()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def _populate(path: Path, tasks: int = 3) -> tuple[list[str], list[str]]:
    """Two queues with ``tasks`` paused tasks each; returns (queues, task names)."""
    async with Harness(store=Store(path)) as h:
        queues = [h.create_queue(), h.create_queue()]
        names = []
        for q in queues:
            h.pause(q)
            for _ in range(tasks):
                names.append(h.create_task(q, http_request={"url": "http://127.0.0.1:1/ok"}).name)
    return queues, names


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emulator", "--port", "0", "--http-port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


# -- another program's file -----------------------------------------------------


@pytest.mark.parametrize(
    "schema",
    [
        ["CREATE TABLE tasks (something TEXT)"],  # a table of the same name
        ["CREATE TABLE notes (body TEXT)", "INSERT INTO notes VALUES ('mine')"],
        # The emulator's own tables plus one of its own: still not ours.
        [
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
            "CREATE TABLE queues (name TEXT PRIMARY KEY, data BLOB NOT NULL)",
            "CREATE TABLE notes (body TEXT)",
        ],
        ["PRAGMA application_id = 1234", "CREATE TABLE meta (key TEXT, value BLOB)"],
    ],
)
def test_another_programs_database_is_refused_and_left_untouched(
    tmp_path: Path, schema: list[str]
) -> None:
    path = tmp_path / "theirs.db"
    _sql(path, *schema)
    before = _digest(path)
    with pytest.raises(ValueError, match="is not an emulator database") as info:
        Store(path)
    assert str(path) in str(info.value)
    assert "nothing was written" in str(info.value)
    assert _digest(path) == before
    assert not path.with_name(path.name + "-wal").exists()
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        assert "tombstones" not in tables


def test_an_empty_sqlite_file_and_an_older_emulator_file_are_used(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    _sql(empty, "PRAGMA user_version = 0")  # a valid SQLite file without tables
    Store(empty).close()
    older = tmp_path / "older.db"
    store = Store(older)
    store.put_meta("x", b"1")
    store.close()
    _sql(older, "PRAGMA application_id = 0", "DROP TABLE quarantine")  # as older emulators left it
    store = Store(older)
    assert store.get_meta("x") == b"1"
    store.close()


# -- damage --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["zero-bytes", "missing-table"])
def test_a_file_that_once_held_data_never_starts_empty(tmp_path: Path, how: str) -> None:
    path = tmp_path / "emu.db"
    Store(path).close()
    if how == "zero-bytes":
        path.write_bytes(b"")
        expected = "is empty (0 bytes)"
    else:
        _sql(path, "DROP TABLE tasks")
        expected = "without its table tasks: it once held data"
    with pytest.raises(ValueError, match=re.escape(expected)) as info:
        Store(path)
    assert str(path) in str(info.value)
    result = _run("--data", str(path))
    assert result.returncode == 1
    assert expected in result.stderr
    assert not any(noise in result.stderr for noise in _NOISE), result.stderr


async def test_damage_quick_check_misses_is_refused_when_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "emu.db"
    await _populate(path, tasks=2)

    def malformed(self: Store, now: float) -> None:
        raise sqlite3.DatabaseError("database disk image is malformed")

    # Found by fuzzing: some damage passes PRAGMA quick_check and fails the load query.
    monkeypatch.setattr(Store, "load_tasks", malformed)
    h = Harness(store=Store(path))
    with pytest.raises(ValueError, match="is damaged") as info:
        await h.start()
    await h.close()
    assert f"sqlite3 {path} .recover" in str(info.value)


async def test_garbage_pages_are_refused_with_how_to_recover(tmp_path: Path) -> None:
    path = tmp_path / "emu.db"
    await _populate(path, tasks=200)
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 6 * page
    data[2 * page : 5 * page] = os.urandom(3 * page)  # keep the header, ruin the b-trees
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged") as info:
        Store(path)
    message = str(info.value)
    assert str(path) in message
    assert "damaged" in message
    assert f"sqlite3 {path} .recover" in message
    result = _run("--data", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith("cloud-tasks-emulator: ")
    assert not any(noise in result.stderr for noise in _NOISE), result.stderr


@pytest.mark.parametrize(
    "damage",
    [
        "UPDATE tasks SET data = X'FFFFFFFF' WHERE name = '{task}'",  # not a protobuf
        "UPDATE tasks SET data = 'text' WHERE name = '{task}'",  # wrong type
        "UPDATE tasks SET execution_count = 'x' WHERE name = '{task}'",
        "UPDATE tasks SET name = NULL WHERE name = '{task}'",
        "UPDATE tasks SET queue = CAST(X'70FF71' AS TEXT) WHERE name = '{task}'",  # not UTF-8
        "UPDATE tasks SET data = 4611686018427387904 WHERE name = '{task}'",
        "UPDATE tasks SET queue = 'projects/p/locations/l/queues/gone' WHERE name = '{task}'",
        # A valid protobuf of another task: the row's key and record disagree.
        "UPDATE tasks SET name = '{task}-moved' WHERE name = '{task}'",
    ],
)
async def test_one_bad_task_row_is_quarantined_and_the_others_load(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "emu.db"
    _, names = await _populate(path)
    bad = names[1]
    _sql(path, damage.format(task=bad))
    with caplog.at_level(logging.WARNING, logger="emulator.store"):
        async with Harness(store=Store(path)) as h:
            assert [n for n in names if h.exists(n)] == [n for n in names if n != bad]
            assert h.emulator.store is not None
            [(kind, _name, reason)] = h.emulator.store.quarantined()
            assert kind == "task"
            assert reason
    assert str(path) in caplog.text
    assert "quarantine" in caplog.text
    # Quarantined once: the next start is clean.
    caplog.clear()
    async with Harness(store=Store(path)) as h:
        assert sum(h.exists(n) for n in names) == len(names) - 1
    assert "skipped" not in caplog.text


@pytest.mark.parametrize(
    "damage",
    [
        "UPDATE queues SET data = X'FF' WHERE name = '{queue}'",
        "UPDATE queues SET data = 42 WHERE name = '{queue}'",
        # Decodes, but breaks a rule (a rate of -1 would stall the dispatcher).
        "UPDATE queues SET data = X'{negative_rate}' WHERE name = '{queue}'",
    ],
)
async def test_one_bad_queue_row_is_quarantined_with_its_tasks(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "emu.db"
    queues, names = await _populate(path)
    bad = tasks_v2.Queue.pb()(name=queues[0])
    bad.rate_limits.max_dispatches_per_second = -1
    _sql(path, damage.format(queue=queues[0], negative_rate=bad.SerializeToString().hex()))
    async with Harness(store=Store(path)) as h:
        assert list(h.emulator.queues) == [queues[1]]
        assert [n for n in names if h.exists(n)] == [n for n in names if queues[1] in n]
        assert h.emulator.store is not None
        kinds = sorted(k for k, _, _ in h.emulator.store.quarantined())
        assert kinds == ["queue", "task", "task", "task"]
        # The emulator still works: the surviving queue dispatches.
        h.resume(queues[1])
        await h.advance(1)
        assert not any(h.exists(n) for n in names)


@pytest.mark.parametrize("value", ["X'2D2D2D'", "4611686018427387904", "'text'", "X''"])
def test_an_unreadable_signing_key_is_refused_with_how_to_recover(
    tmp_path: Path, value: str
) -> None:
    path = tmp_path / "emu.db"
    store = Store(path)
    Emulator(store=store)  # stores its new signing key
    store.close()
    _sql(path, f"UPDATE meta SET value = {value} WHERE key = 'oidc_private_key'")  # noqa: S608
    store = Store(path)
    with pytest.raises(ValueError, match="signing key stored in the data file") as info:
        Emulator(store=store)
    store.close()
    assert str(path) in str(info.value)
    assert "DELETE FROM meta WHERE key = 'oidc_private_key'" in str(info.value)
    result = _run("--data", str(path))
    assert result.returncode == 1
    assert "signing key" in result.stderr
    assert not any(noise in result.stderr for noise in _NOISE), result.stderr


# -- privacy ---------------------------------------------------------------------


async def test_the_data_file_and_its_sidecars_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "fresh" / "emu.db"
        async with Harness(store=Store(path)) as h:
            h.create_queue()
            for p in (path, path.with_name("emu.db-wal"), path.with_name("emu.db-shm")):
                assert (p.stat().st_mode & 0o777) == 0o600, p
        assert (path.parent.stat().st_mode & 0o777) == 0o700
        # An emulator file left world-readable by an older emulator is made private.
        os.chmod(path, 0o644)
        Store(path).close()
        assert (path.stat().st_mode & 0o777) == 0o600
        with contextlib.closing(sqlite3.connect(path)) as db:
            assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    finally:
        os.umask(old)


async def test_an_unwritable_data_file_backs_off_instead_of_a_hot_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "emu.db")
    async with Harness(store=store) as h:
        queue = h.create_queue()
        task = h.create_task(queue, http_request={"url": "https://w.example/status/500"})

        def full(*args: object, **kwargs: object) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(Store, "put_task", full)
        with caplog.at_level(logging.ERROR, logger="emulator"):
            await h.advance(120)
        times = [s.at - h.now() + 120 for s in h.deliverer.for_task(task.name)]
        # Attempts 1 s, 2 s, 4 s ... apart, at most 60 s: not one a second.
        gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
        assert gaps[:6] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0], gaps
        assert len(times) <= 8
        assert h.exists(task.name)  # the acknowledged task is kept
        assert "database or disk is full" in caplog.text
        monkeypatch.undo()
        await h.advance(120)
        assert h.exists(task.name)
