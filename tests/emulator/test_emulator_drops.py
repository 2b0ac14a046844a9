"""Dropped tasks (retries exhausted) are logged one line each and counted per queue.

In-process on a fake clock for what counts as a drop and what it records, and
against a real emulator process for the log line, ``GET /emulator/v1/dropped``
and the health field, with a worker that refuses connections, as when it is down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
import requests

from emulator.store import Store
from emulator.testing import EmulatorProcess
from tests.emulator.inproc import Harness
from tests.emulator.support import eventually

URL = "https://worker.example.com"
ONE_SHOT = {"max_attempts": 2, "min_backoff": "1s", "max_backoff": "1s"}


def _drop_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        json.loads(r.getMessage())
        for r in caplog.records
        if r.name == "emulator.dropped" and "task_dropped" in r.getMessage()
    ]


async def _dropped_scenario(core: Harness) -> tuple[str, str, str]:
    queue = core.create_queue(retry_config=ONE_SHOT)
    denied = core.create_task(queue, http_request={"url": f"{URL}/status/403"})
    down = core.create_task(queue, http_request={"url": f"{URL}/unreachable"})
    core.create_task(queue, http_request={"url": f"{URL}/flaky/1"})  # succeeds on retry
    deleted = core.create_task(
        queue, http_request={"url": URL}, schedule_time={"seconds": int(core.now()) + 60}
    )
    core.delete_task(deleted.name)  # deleted by a caller: not a drop
    await core.advance(10)
    return queue, denied.name, down.name


def test_drop_log_line_is_one_json_object_per_task(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="emulator.dropped")

    async def run() -> tuple[str, str, str]:
        async with Harness() as core:
            return await _dropped_scenario(core)

    queue, denied, down = asyncio.run(run())
    lines = {line["task"]: line for line in _drop_lines(caplog)}
    assert set(lines) == {denied, down}
    assert lines[denied]["queue"] == queue
    assert lines[denied]["attempts"] == 2
    assert lines[denied]["last_status"] == 403
    assert lines[denied]["last_error"].startswith("HTTP 403")
    assert lines[down]["last_status"] is None
    assert "Could not reach" in lines[down]["last_error"]
    assert lines[down]["event"] == "task_dropped"


async def test_drops_are_counted_per_queue(core: Harness) -> None:
    queue, denied, down = await _dropped_scenario(core)
    other = core.create_queue()
    report = core.emulator.dropped()
    assert report["total"] == 2
    assert report["queues"] == {queue: 2}
    assert {d["task"] for d in report["recent"]} == {denied, down}
    assert core.emulator.dropped(other) == {"total": 0, "queues": {other: 0}, "recent": []}
    assert core.emulator.health()["dropped"] == 2
    assert core.emulator.reset_dropped() == 2
    assert core.emulator.dropped()["total"] == 0


async def test_a_task_only_the_task_retry_config_gives_up_on_is_a_drop(core: Harness) -> None:
    queue = core.create_queue(retry_config={"max_attempts": -1})
    task = core.create_task(
        queue, http_request={"url": f"{URL}/status/401"}, retry_config={"max_attempts": 1}
    )
    await core.advance(5)
    [record] = core.emulator.dropped(queue)["recent"]
    assert (record["task"], record["attempts"], record["last_status"]) == (task.name, 1, 401)


async def test_drop_counts_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "emu.db"
    async with Harness(store=Store(db)) as before:
        queue = before.create_queue(retry_config=ONE_SHOT)
        before.create_task(queue, http_request={"url": f"{URL}/status/500"})
        await before.advance(5)
        assert before.emulator.dropped()["queues"] == {queue: 1}
    async with Harness(store=Store(db)) as after:
        assert after.emulator.dropped()["queues"] == {queue: 1}
        assert after.emulator.health()["dropped"] == 1


# -- a real process ---------------------------------------------------------------------


def _refused_url() -> str:
    """A loopback URL nothing listens on (a port just bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/task"


@pytest.mark.integration
def test_process_logs_and_serves_dropped_tasks(make_queue: Any, emu: EmulatorProcess) -> None:
    client = emu.client()
    queue = make_queue(retry_config={"max_attempts": 1})
    task = client.create_task(parent=queue, task={"http_request": {"url": _refused_url()}})
    assert eventually(lambda: emu.dropped(queue)["total"] == 1, timeout=10)
    report = emu.dropped(queue)
    assert report["queues"] == {queue: 1}
    [record] = report["recent"]
    assert record["task"] == task.name
    assert record["last_status"] is None
    assert record["attempts"] == 1
    assert emu.health()["dropped"] >= 1
    assert eventually(lambda: task.name in emu.log_text(), timeout=5)
    line = next(ln for ln in emu.log_text().splitlines() if task.name in ln)
    assert "WARNING emulator.dropped" in line
    assert json.loads(line[line.index("{") :])["queue"] == queue
    bad = requests.get(f"{emu.http_url}/emulator/v1/dropped", params={"queue": "x"}, timeout=5)
    assert bad.status_code == 400
    assert "Invalid queue name" in bad.json()["error"]["message"]
