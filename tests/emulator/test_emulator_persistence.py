"""Persistence with --data: state survives SIGTERM and kill -9; nothing acknowledged is lost."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.protobuf import timestamp_pb2

from emulator.testing import EmulatorProcess
from tests.emulator.support import eventually

pytestmark = pytest.mark.integration
PARENT = "projects/persist/locations/l"
FULL = tasks_v2.Task.View.FULL


def _in(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int((time.time() + seconds) * 1e9))
    return ts


def test_state_survives_kill_9(tmp_path: Path, target: Any) -> None:
    with EmulatorProcess(tmp_path / "emu.db") as emu:
        client = emu.client()
        paused = client.create_queue(parent=PARENT, queue={"name": f"{PARENT}/queues/paused"}).name
        retrying = client.create_queue(
            parent=PARENT,
            queue={
                "name": f"{PARENT}/queues/retrying",
                "retry_config": {"min_backoff": "3s", "max_backoff": "3s"},
            },
        ).name
        client.pause_queue(name=paused)
        held = client.create_task(
            parent=paused,
            task={
                "name": f"{paused}/tasks/held",
                "http_request": {"url": target.url(), "body": b"b"},
            },
        )
        done = f"{retrying}/tasks/done"
        client.create_task(
            parent=retrying, task={"name": done, "http_request": {"url": target.url()}}
        )
        failing = client.create_task(
            parent=retrying, task={"http_request": {"url": target.url("/flaky/1")}}
        )
        target.wait_for(1, failing.name)
        target.wait_for(1, done)

        def recorded() -> bool:
            # The failed attempt is on record and the finished task is gone.
            attempt = client.get_task(request={"name": failing.name, "response_view": FULL})
            return attempt.last_attempt.response_status.code == 13 and done not in {
                t.name for t in client.list_tasks(parent=retrying)
            }

        assert eventually(recorded)
        # Hold the retry back so a slow restart cannot race the assertions below.
        client.pause_queue(name=retrying)
        jwks = requests.get(emu.jwks_url, timeout=5).json()
        emu.kill()
        emu.restart()
        client = emu.client()
        assert client.get_queue(name=paused).state == tasks_v2.Queue.State.PAUSED
        assert client.get_queue(name=retrying).retry_config.min_backoff.total_seconds() == 3
        restored = client.get_task(request={"name": held.name, "response_view": FULL})
        assert restored.http_request.body == b"b"
        with pytest.raises(exceptions.AlreadyExists):  # the tombstone survived too
            client.create_task(
                parent=retrying, task={"name": done, "http_request": {"url": target.url()}}
            )
        state = client.get_task(request={"name": failing.name, "response_view": FULL})
        assert state.dispatch_count == 1
        assert state.last_attempt.response_status.code == 13
        # The retry resumes and carries the attempt history.
        client.resume_queue(name=retrying)
        second = target.wait_for(2, failing.name, timeout=5)[1]
        assert second.headers["X-CloudTasks-TaskRetryCount"] == "1"
        assert second.headers["X-CloudTasks-TaskPreviousResponse"] == "500"
        client.resume_queue(name=paused)
        assert len(target.wait_for(1, held.name)) == 1
        # Tokens minted before the restart still verify: the signing key persisted.
        assert requests.get(emu.jwks_url, timeout=5).json() == jwks


@pytest.mark.parametrize("durability", [(), ("--fsync",)], ids=["default", "fsync"])
def test_no_acknowledged_task_is_lost_when_killed_mid_load(
    tmp_path: Path, target: Any, durability: tuple[str, ...]
) -> None:
    """Concurrent clients keep CreateTask calls in every group commit when SIGKILL
    lands; every call that returned OK is in the file after the restart."""
    with EmulatorProcess(tmp_path / "emu.db", extra_args=durability) as emu:
        setup = emu.client()
        queue = setup.create_queue(parent=PARENT, queue={"name": f"{PARENT}/queues/load"}).name
        setup.pause_queue(name=queue)
        acked: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def produce(worker: int) -> None:
            client = emu.client()
            i = 0
            while not stop.is_set():
                # Half the producers name their tasks, half take the generated name.
                task: dict[str, Any] = {"http_request": {"url": target.url(), "body": b"b"}}
                if worker % 2:
                    task["name"] = f"{queue}/tasks/w{worker}-{i}"
                try:
                    created = client.create_task(parent=queue, task=task)
                except (exceptions.GoogleAPICallError, ValueError):
                    # The server died (or kill() closed the channel): never acknowledged.
                    return
                with lock:
                    acked.append(created.name)
                i += 1

        threads = [threading.Thread(target=produce, args=(w,)) for w in range(6)]
        for t in threads:
            t.start()
        assert eventually(lambda: len(acked) >= 300), "the producers never got going"
        emu.kill()
        stop.set()
        for t in threads:
            t.join(timeout=10)
        emu.restart()
        client = emu.client()
        stored = {t.name for t in client.list_tasks(parent=queue)}
        missing = set(acked) - stored
        assert not missing, f"{len(missing)} of {len(acked)} acknowledged tasks lost"
        # Rows committed but never answered (the kill came between) may be there too.
        assert len(stored) >= len(acked)
        restored = client.get_task(request={"name": acked[-1], "response_view": FULL})
        assert restored.http_request.body == b"b"


def test_pending_tasks_resume_after_a_clean_restart(tmp_path: Path, target: Any) -> None:
    with EmulatorProcess(tmp_path / "emu.db") as emu:
        client = emu.client()
        queue = client.create_queue(parent=PARENT, queue={"name": f"{PARENT}/queues/later"}).name
        task = client.create_task(
            parent=queue, task={"http_request": {"url": target.url()}, "schedule_time": _in(1.5)}
        )
        assert emu.stop() == 0
        assert target.for_task(task.name) == []  # still pending when the process stopped
        emu.restart()
        assert len(target.wait_for(1, task.name, timeout=5)) == 1
        assert emu.health()["persistent"] is True


def test_sigterm_during_a_slow_delivery_exits_promptly_and_redelivers(
    tmp_path: Path, target: Any
) -> None:
    with EmulatorProcess(tmp_path / "emu.db") as emu:
        client = emu.client()
        queue = client.create_queue(parent=PARENT, queue={"name": f"{PARENT}/queues/slow"}).name
        task = client.create_task(
            parent=queue, task={"http_request": {"url": target.url("/sleep/30")}}
        )
        target.wait_for(1, task.name)
        # stop() waits 10 s at most for SIGTERM to work, so a clean exit here means the
        # 30 s attempt was cancelled, not awaited.
        assert emu.stop() == 0
        emu.restart()
        # The interrupted attempt never completed, so the task is delivered again.
        assert len(target.wait_for(2, task.name, timeout=5)) == 2


def test_every_acknowledged_task_is_delivered_despite_a_kill_mid_dispatch(
    tmp_path: Path, target: Any
) -> None:
    with EmulatorProcess(tmp_path / "emu.db") as emu:
        client = emu.client()
        queue = client.create_queue(
            parent=PARENT,
            queue={
                "name": f"{PARENT}/queues/busy",
                "rate_limits": {"max_dispatches_per_second": 100},
            },
        ).name
        names = [
            client.create_task(
                parent=queue, task={"http_request": {"url": target.url(), "body": str(i).encode()}}
            ).name
            for i in range(300)
        ]
        target.wait_for(150, timeout=10)
        emu.kill()  # roughly half delivered, some in flight
        emu.restart()
        target.wait_for(len(names), timeout=15)
        client = emu.client()

        def delivered() -> set[str]:
            with target.lock:
                ids = {d.headers["X-CloudTasks-TaskName"] for d in target.deliveries}
            return {f"{queue}/tasks/{task_id}" for task_id in ids}

        assert eventually(lambda: set(names) <= delivered(), timeout=15)
        assert eventually(lambda: list(client.list_tasks(parent=queue)) == [])


def test_a_second_emulator_on_the_same_data_file_is_refused(tmp_path: Path) -> None:
    """Two emulators on one file would both deliver its tasks: the second does not start."""
    data = tmp_path / "emu.db"
    with EmulatorProcess(data) as emu:
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "emulator",
                "--port",
                "0",
                "--http-port",
                "0",
                "--data",
                str(data),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode != 0
        assert second.stdout == ""  # never printed its ready line
        assert f"the emulator data file {data} is in use by another emulator" in second.stderr
        assert "Traceback" not in second.stderr
        assert emu.client().list_queues(parent="projects/p/locations/l") is not None
    # Once the first has stopped, the file is free again.
    with EmulatorProcess(data) as emu:
        assert list(emu.client().list_queues(parent="projects/p/locations/l")) == []
