"""A deleted queue's tombstone window (``--queue-tombstone-seconds``), as the queues.delete
docs describe it: the name may not be reused "for a tombstone window of up to 3 days",
and meanwhile CreateQueue "may appear to recreate the queue"; only GetQueue tells.
Through the official clients against emulator processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2

from contract.limits import DEFAULT_QUEUE_TOMBSTONE_S, GOOGLE_MAX_QUEUE_TOMBSTONE_S
from emulator.testing import EmulatorProcess
from tests.emulator.conftest import PARENT, unique


def _create(client: Any, name: str) -> Any:
    return client.create_queue(
        parent=PARENT, queue={"name": name, "rate_limits": {"max_dispatches_per_second": 3}}
    )


def test_create_appears_to_succeed_inside_the_window_and_get_tells(tmp_path: Path) -> None:
    # Google's full 3 days, passed in milliseconds on the manual clock.
    window = GOOGLE_MAX_QUEUE_TOMBSTONE_S
    args = ("--manual-clock", "--queue-tombstone-seconds", str(window))
    with EmulatorProcess(tmp_path / "tasks.db", extra_args=args) as emu:
        client, rest = emu.client("grpc"), emu.client("rest")
        name = f"{PARENT}/queues/{unique('tomb')}"
        _create(client, name)
        client.create_task(parent=name, task={"http_request": {"url": "http://127.0.0.1:9/x"}})
        client.delete_queue(name=name)
        for api in (client, rest):
            answered = _create(api, name)  # looks like a success ...
            assert answered.name == name
            assert answered.state == tasks_v2.Queue.State.RUNNING
            with pytest.raises(exceptions.NotFound, match="tombstone window"):
                api.get_queue(name=name)  # ... but nothing was created
        assert name not in {q.name for q in client.list_queues(parent=PARENT)}
        with pytest.raises(exceptions.NotFound, match="tombstone window"):
            client.create_task(parent=name, task={"http_request": {"url": "http://127.0.0.1:9/"}})
        emu.restart()  # the window is kept in the data file
        client = emu.client("grpc")
        _create(client, name)
        with pytest.raises(exceptions.NotFound):
            client.get_queue(name=name)
        emu.advance(window - 60)
        _create(client, name)
        with pytest.raises(exceptions.NotFound):
            client.get_queue(name=name)
        emu.advance(61)
        _create(client, name)
        recreated = client.get_queue(name=name)
        assert recreated.rate_limits.max_dispatches_per_second == 3
        assert list(client.list_tasks(parent=name)) == []  # the old tasks went with the queue


def test_the_default_window_is_short_and_then_the_name_is_free() -> None:
    assert 0 < DEFAULT_QUEUE_TOMBSTONE_S <= 10
    with EmulatorProcess(extra_args=("--queue-tombstone-seconds", "0.5")) as emu:
        client = emu.client("grpc")
        name = f"{PARENT}/queues/{unique('tomb')}"
        _create(client, name)
        client.delete_queue(name=name)
        _create(client, name)
        with pytest.raises(exceptions.NotFound):
            client.get_queue(name=name)
        time.sleep(0.6)
        _create(client, name)
        assert client.get_queue(name=name).name == name
        # UpdateQueue, which creates a missing queue, meets the same window.
        client.delete_queue(name=name)
        client.update_queue(queue={"name": name})
        with pytest.raises(exceptions.NotFound, match="tombstone window"):
            client.get_queue(name=name)
        assert emu.reset_tombstones() == 1  # the admin reset frees queue names too
        client.update_queue(queue={"name": name})
        assert client.get_queue(name=name).name == name


def test_zero_frees_the_name_at_once() -> None:
    with EmulatorProcess(extra_args=("--queue-tombstone-seconds", "0")) as emu:
        client = emu.client("grpc")
        name = f"{PARENT}/queues/{unique('tomb')}"
        _create(client, name)
        client.delete_queue(name=name)
        _create(client, name)
        assert client.get_queue(name=name).name == name
        assert emu.health()["tombstones"] == 0


def test_a_negative_window_is_a_one_line_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "emulator", "--queue-tombstone-seconds", "-1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "cannot be negative" in done.stderr.splitlines()[-1]
