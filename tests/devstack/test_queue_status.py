"""`devstack status` shows every queue of the stack: key, state, depth and rate cap, read
from a real emulator through the official client.

The stack's state is written as `up` records it (no processes, so only the queues
are looked at); `status` runs as the command a user types.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import tasks_v2

from devstack.queue_status import queue_statuses
from devstack.state import StackPaths, StackState, save_state
from emulator.testing import EmulatorProcess
from tests.devstack.stack_helpers import run_cli

pytestmark = pytest.mark.integration
PARENT = "projects/status-test/locations/us-central1"
CAPS = {"default": (100.0, 10), "email": (2.0, 1), "reports": (20.0, 5)}


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    with EmulatorProcess() as emu:
        yield emu


def three_queues(emu: EmulatorProcess) -> dict[str, str]:
    """Three queues with their own caps; `email` paused and holding two tasks."""
    client = emu.client()
    suffix = time.time_ns()
    paths: dict[str, str] = {}
    for key, (rate, concurrent) in CAPS.items():
        queue = tasks_v2.Queue(
            name=f"{PARENT}/queues/{key}-{suffix}",
            rate_limits=tasks_v2.RateLimits(
                max_dispatches_per_second=rate, max_concurrent_dispatches=concurrent
            ),
        )
        paths[key] = client.create_queue(parent=PARENT, queue=queue).name
    client.pause_queue(name=paths["email"])
    for _ in range(2):
        task = tasks_v2.Task(
            http_request=tasks_v2.HttpRequest(url="https://worker.example.test/tasks/x")
        )
        client.create_task(parent=paths["email"], task=task)
    return paths


def outputs_for(emu: EmulatorProcess, paths: dict[str, str]) -> dict[str, Any]:
    return {
        "queue": paths["default"],
        "queues": paths,
        "emulator_host": emu.grpc_host,
        "emulator_url": emu.http_url,
    }


def test_every_queue_is_read_with_its_state_depth_and_caps(emulator: EmulatorProcess) -> None:
    paths = three_queues(emulator)
    statuses = {s.key: s for s in queue_statuses(outputs_for(emulator, paths))}
    assert list(statuses) == ["default", "email", "reports"]
    email = statuses["email"]
    assert (email.state, email.depth, email.path) == ("PAUSED", 2, paths["email"])
    assert (email.max_dispatches_per_second, email.max_concurrent_dispatches) == (2.0, 1)
    assert (statuses["reports"].state, statuses["reports"].depth) == ("RUNNING", 0)
    assert statuses["reports"].max_dispatches_per_second == 20.0
    assert (
        email.line()
        == f"email: state PAUSED, depth 2, rate 2/s (1 concurrent), dropped 0  {paths['email']}"
    )


def test_outputs_of_a_single_queue_stack_show_default(emulator: EmulatorProcess) -> None:
    paths = three_queues(emulator)
    outputs = outputs_for(emulator, paths)
    del outputs["queues"]
    [only] = queue_statuses(outputs)
    assert (only.key, only.path, only.state, only.depth) == (
        "default",
        paths["default"],
        "RUNNING",
        0,
    )


def write_state(root: Path, stack: str, outputs: dict[str, Any]) -> None:
    state = StackState(
        stack=stack, plan_source="test", started_at=0, ready_seconds=0, plan_seconds=0
    )
    state.outputs = outputs
    save_state(StackPaths.for_stack(stack, root), state)


def test_status_lists_every_queue(emulator: EmulatorProcess, tmp_path: Path) -> None:
    paths = three_queues(emulator)
    write_state(tmp_path, "multi", outputs_for(emulator, paths))
    done = run_cli("status", "--stack", "multi", "--root", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "queues (3; rate = the queue's dispatch cap):" in lines
    assert (
        "  default: state RUNNING, depth 0, rate 100/s (10 concurrent), dropped 0  "
        f"{paths['default']}" in lines
    )
    assert (
        f"  email: state PAUSED, depth 2, rate 2/s (1 concurrent), dropped 0  {paths['email']}"
        in lines
    )
    assert (
        "  reports: state RUNNING, depth 0, rate 20/s (5 concurrent), dropped 0  "
        f"{paths['reports']}" in lines
    )


def test_a_queue_the_emulator_lacks_fails_status(emulator: EmulatorProcess, tmp_path: Path) -> None:
    paths = three_queues(emulator)
    paths["fax"] = f"{PARENT}/queues/never-created"
    write_state(tmp_path, "broken", outputs_for(emulator, paths))
    done = run_cli("status", "--stack", "broken", "--root", str(tmp_path))
    assert done.returncode == 1
    [fax] = [line for line in done.stdout.splitlines() if line.startswith("  fax:")]
    assert fax.startswith("  fax: state unknown, depth unknown, rate unknown, dropped unknown")
    assert "NotFound" in fax


def test_status_shows_tasks_dropped_per_queue(emulator: EmulatorProcess, tmp_path: Path) -> None:
    """A task whose only attempt cannot reach the worker is counted on its own queue."""
    paths = three_queues(emulator)
    client = emulator.client()
    client.update_queue(
        queue=tasks_v2.Queue(name=paths["reports"], retry_config={"max_attempts": 1}),
        update_mask={"paths": ["retry_config"]},
    )
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{s.getsockname()[1]}/tasks/x"
    for _ in range(2):
        task = tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=refused))
        client.create_task(parent=paths["reports"], task=task)
    outputs = outputs_for(emulator, paths)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        statuses = {s.key: s for s in queue_statuses(outputs)}
        if statuses["reports"].dropped == 2:
            break
        time.sleep(0.05)
    assert (statuses["reports"].dropped, statuses["default"].dropped) == (2, 0)
    write_state(tmp_path, "drops", outputs)
    done = run_cli("status", "--stack", "drops", "--root", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    [line] = [ln for ln in done.stdout.splitlines() if ln.startswith("  reports:")]
    assert "depth 0, rate 20/s (5 concurrent), dropped 2  " in line
