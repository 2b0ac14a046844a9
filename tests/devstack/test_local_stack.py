"""The local stack end to end: real emulator, real worker, real tokens, the real plan."""

from __future__ import annotations

import asyncio
import copy
import os
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.api_core.exceptions import NotFound
from google.cloud import tasks_v2

from contract.names import (
    LOCAL_OUTPUT_KEYS,
    OUTPUT_AUDIENCE,
    OUTPUT_EMULATOR_HOST,
    OUTPUT_INVOKER_EMAIL,
    OUTPUT_QUEUE,
    OUTPUT_SERVICE_URL,
    SMOKE_TASK_TYPE,
)
from contract.resources import QUEUE_TYPE, RUN_SERVICE_IAM_MEMBER_TYPE
from devstack import processes, runtime
from devstack.processes import is_running
from devstack.runtime import tasks_client
from devstack.state import load_state
from enqueue import AsyncEnqueuer, RetryPolicy, TaskOutcome, TaskSpec, enqueue_many, load_outputs
from tests.devstack.stack_helpers import REPO_ROOT, LocalStack, run_smoke, write_plan

pytestmark = pytest.mark.integration


def _planned_queue(plan: dict[str, Any]) -> dict[str, Any]:
    [queue] = [r for r in plan["resources"] if r["type"] == QUEUE_TYPE]
    found: dict[str, Any] = queue
    return found


def test_up_smoke_status_down(local_stack: LocalStack, dev_plan: dict[str, Any]) -> None:
    result = local_stack.up()
    assert "no local effect" in result.stdout
    assert "is up in" in result.stdout

    outputs = local_stack.outputs()
    assert set(outputs) == set(LOCAL_OUTPUT_KEYS)
    assert outputs[OUTPUT_QUEUE] == dev_plan["outputs"][OUTPUT_QUEUE]
    assert outputs[OUTPUT_AUDIENCE] == dev_plan["outputs"][OUTPUT_AUDIENCE]
    assert outputs[OUTPUT_INVOKER_EMAIL] == dev_plan["outputs"][OUTPUT_INVOKER_EMAIL]
    assert outputs[OUTPUT_SERVICE_URL].startswith("http://127.0.0.1:")

    # The emulator holds exactly the planned queue settings.
    client = tasks_client(outputs[OUTPUT_EMULATOR_HOST])
    try:
        queue = client.get_queue(name=outputs[OUTPUT_QUEUE], timeout=5)
    finally:
        client.transport.close()  # type: ignore[no-untyped-call]
    planned = _planned_queue(dev_plan)["inputs"]
    rate = planned["rateLimits"]
    assert queue.rate_limits.max_dispatches_per_second == rate["maxDispatchesPerSecond"]
    assert queue.rate_limits.max_concurrent_dispatches == rate["maxConcurrentDispatches"]
    assert queue.retry_config.max_attempts == planned["retryConfig"]["maxAttempts"]
    assert queue.state == tasks_v2.Queue.State[planned.get("desiredState", "RUNNING")]  # type: ignore[misc]

    smoke = run_smoke(local_stack.paths.outputs_file)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "smoke test passed" in smoke.stdout
    assert "no token -> HTTP 401" in smoke.stderr

    _run_documented_official_client_example(local_stack, outputs)

    again = local_stack.cli("up", "--detach")
    assert again.returncode == 1
    assert "already up" in again.stderr

    status = local_stack.cli("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "depth 0" in status.stdout
    assert "tasks-worker-image" not in status.stdout  # compact by default
    verbose = local_stack.cli("status", "--verbose")
    assert "tasks-worker-image" in verbose.stdout  # listed as no local effect

    pids = local_stack.recorded_pids()
    down = local_stack.cli("down")
    assert down.returncode == 0
    assert not [pid for pid in pids.values() if is_running(pid)]
    with pytest.raises(httpx.ConnectError):
        httpx.get(outputs[OUTPUT_SERVICE_URL] + "/healthz", timeout=2)
    assert load_state(local_stack.paths) is None
    assert local_stack.cli("status").returncode == 3


def _run_documented_official_client_example(stack: LocalStack, outputs: dict[str, str]) -> None:
    """docs/local.md's official-client example enqueues a task that is delivered."""
    doc = (REPO_ROOT / "docs" / "local.md").read_text()
    block = doc.split("<!-- example: official-client -->", 1)[1]
    code = block.split("```python\n", 1)[1].split("```", 1)[0]
    env = dict(os.environ, OUTPUTS=str(stack.paths.outputs_file))
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    name = result.stdout.strip()
    assert name.startswith(outputs[OUTPUT_QUEUE] + "/tasks/")
    client = tasks_client(outputs[OUTPUT_EMULATOR_HOST])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.get_task(name=name, timeout=5)
            except NotFound:
                break
            assert time.monotonic() < deadline, f"{name} was not delivered"
            time.sleep(0.1)
    finally:
        client.transport.close()  # type: ignore[no-untyped-call]
    task_id = name.rsplit("/", 1)[1]
    delivered = [
        line for line in stack.paths.worker_log.read_text().splitlines() if task_id in line
    ]
    assert delivered
    assert '"status":200' in delivered[-1].replace(" ", "")


def test_wrong_invoker_binding_fails_the_smoke_test_with_the_403_hint(
    local_stack: LocalStack, dev_plan: dict[str, Any], tmp_path: Path
) -> None:
    plan = copy.deepcopy(dev_plan)
    [binding] = [r for r in plan["resources"] if r["type"] == RUN_SERVICE_IAM_MEMBER_TYPE]
    binding["inputs"]["member"] = (
        "serviceAccount:not-the-invoker@my-tasks-dev.iam.gserviceaccount.com"
    )
    local_stack.start(plan_file=write_plan(tmp_path / "wrong.json", plan))

    smoke = run_smoke(local_stack.paths.outputs_file, "--timeout", "4")
    assert smoke.returncode == 1
    reason = smoke.stderr.strip().splitlines()[-1]
    assert reason.startswith("SMOKE TEST FAILED")
    assert "HTTP 403" in reason
    assert "roles/run.invoker" in reason
    # `status` shows who the realised binding lets in, as the 403 hint in docs/local.md says.
    status = local_stack.cli("status").stdout
    assert "not-the-invoker@my-tasks-dev.iam.gserviceaccount.com may invoke the worker" in status
    assert f"{dev_plan['outputs'][OUTPUT_INVOKER_EMAIL]} may invoke" not in status


def test_a_paused_queue_is_realised_paused_and_the_smoke_test_still_passes(
    local_stack: LocalStack, dev_plan: dict[str, Any], tmp_path: Path
) -> None:
    """RunTask delivers the smoke task on a paused queue (as Cloud Tasks does); the
    queue's other tasks stay held, and the smoke test says the queue is paused."""
    plan = copy.deepcopy(dev_plan)
    _planned_queue(plan)["inputs"]["desiredState"] = "PAUSED"
    local_stack.start(plan_file=write_plan(tmp_path / "paused.json", plan))
    assert "state PAUSED" in local_stack.cli("status").stdout
    held = _send(local_stack, "smoke", '{"held": true}')

    smoke = run_smoke(local_stack.paths.outputs_file, "--timeout", "20")
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "is PAUSED: RunTask delivered the smoke task" in smoke.stderr
    client = tasks_client(local_stack.outputs()[OUTPUT_EMULATOR_HOST])
    try:
        assert client.get_task(name=held, timeout=5).dispatch_count == 0
    finally:
        client.transport.close()  # type: ignore[no-untyped-call]


def test_the_smoke_test_does_not_wait_behind_a_backlog(
    local_stack: LocalStack, dev_plan: dict[str, Any], tmp_path: Path
) -> None:
    plan = copy.deepcopy(dev_plan)
    _planned_queue(plan)["inputs"]["rateLimits"]["maxDispatchesPerSecond"] = 1
    local_stack.start(plan_file=write_plan(tmp_path / "slow.json", plan))
    backlog = tmp_path / "backlog.jsonl"
    backlog.write_text("".join(f'{{"type": "smoke", "data": {{"n": {n}}}}}\n' for n in range(300)))
    outputs = str(local_stack.paths.outputs_file)
    sent = subprocess.run(
        [sys.executable, "-m", "enqueue", "--outputs", outputs, "bulk", str(backlog)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert sent.returncode == 0, sent.stderr
    # 300 tasks at 1/s: in turn, the smoke task would wait about five minutes.
    smoke = run_smoke(local_stack.paths.outputs_file, "--timeout", "20")
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr


def _send(stack: LocalStack, task_type: str, data: str) -> str:
    outputs = str(stack.paths.outputs_file)
    done = subprocess.run(
        [sys.executable, "-m", "enqueue", "--outputs", outputs, "send", task_type, "--data", data],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_emulator_sigkill_during_bulk_enqueue_loses_no_acknowledged_task(
    local_stack: LocalStack,
) -> None:
    local_stack.start()
    outputs = load_outputs(local_stack.paths.outputs_file)
    emulator_pid = local_stack.recorded_pids()["emulator"]
    prefix = secrets.token_hex(4)
    acknowledged: list[str] = []
    killed = threading.Event()
    kill_after = 60

    def specs() -> Iterator[TaskSpec]:
        # Stops feeding once the emulator is dead: only creates in flight then fail.
        for i in range(10_000):
            if killed.is_set():
                return
            # Scheduled an hour ahead so the tasks are still queued after the restart.
            yield TaskSpec(type=SMOKE_TASK_TYPE, data={"i": i}, name=f"{prefix}-{i}", delay=3600)

    def on_outcome(outcome: TaskOutcome) -> None:
        if outcome.status == "created" and outcome.name:
            acknowledged.append(outcome.name)
            if len(acknowledged) == kill_after:
                os.kill(emulator_pid, signal.SIGKILL)
                killed.set()

    async def bulk() -> int:
        policy = RetryPolicy(deadline=1.0, max_attempts=2, attempt_timeout=2.0)
        async with AsyncEnqueuer(outputs, retry=policy) as enqueuer:
            summary = await enqueue_many(enqueuer, specs(), concurrency=8, on_outcome=on_outcome)
        return len(summary.failed)

    asyncio.run(bulk())
    assert killed.is_set()
    assert len(acknowledged) >= kill_after

    status = local_stack.cli("status")
    assert status.returncode == 1
    assert "emulator pid" in status.stdout
    assert "NOT RUNNING" in status.stdout

    restarted = local_stack.cli("up", "--detach")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "partly down (emulator gone)" in restarted.stdout

    host = local_stack.outputs()[OUTPUT_EMULATOR_HOST]
    client = tasks_client(host)
    try:
        request = tasks_v2.ListTasksRequest(parent=outputs.queue, page_size=1000)
        present = {t.name for t in client.list_tasks(request=request, timeout=10)}
    finally:
        client.transport.close()  # type: ignore[no-untyped-call]
    lost = [name for name in acknowledged if name not in present]
    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged tasks lost: {lost[:5]}"


def _story(stack: LocalStack, seen: list[str]) -> str:
    """What `up` printed and the ends of both logs, for a failure message."""
    parts = ["".join(seen)]
    for log in (stack.paths.emulator_log, stack.paths.worker_log):
        lines = log.read_text().splitlines()[-15:] if log.exists() else ["(no log)"]
        parts.append(f"--- {log.name}:\n" + "\n".join(lines))
    return "\n".join(parts)


def _foreground_up(stack: LocalStack, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start `up` in the foreground and return once it says it stays up."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack", "up", "--root", str(stack.root), *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    # Read raw bytes: a buffered readline() after select() can leave complete
    # lines in Python's buffer while select() waits for more on the pipe.
    fd = proc.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    chunks = b""
    try:
        deadline = time.monotonic() + 90
        while b"press Ctrl-C" not in chunks:
            seen[:] = [chunks.decode(errors="replace")]
            assert time.monotonic() < deadline, "no ready message:\n" + _story(stack, seen)
            if selector.select(timeout=1):
                data = os.read(fd, 65536)
                assert data, "up exited early:\n" + _story(stack, seen)
                chunks += data
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    finally:
        selector.close()
    return proc, chunks.decode(errors="replace")


def test_foreground_up_with_smoke_stops_everything_on_ctrl_c(local_stack: LocalStack) -> None:
    proc, output = _foreground_up(local_stack, "--smoke")
    try:
        assert "smoke test passed" in output
        assert "python -m enqueue --outputs" in output
        assert "worker.log" in output
        pids = local_stack.recorded_pids()

        # Ctrl-C, then an impatient SIGTERM: the second signal must not cut the
        # shutdown short.
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, output + rest
        assert "stopping the stack" in rest
        assert not [pid for pid in pids.values() if is_running(pid)]
        assert load_state(local_stack.paths) is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_down_from_another_terminal_ends_a_foreground_up(local_stack: LocalStack) -> None:
    proc, output = _foreground_up(local_stack)
    try:
        pids = local_stack.recorded_pids()
        assert local_stack.cli("down").returncode == 0
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, output + rest
        assert "taken down by `devstack down`" in rest
        assert not [pid for pid in pids.values() if is_running(pid)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_plan_that_cannot_be_realised_starts_nothing(
    local_stack: LocalStack, dev_plan: dict[str, Any], tmp_path: Path
) -> None:
    plan = copy.deepcopy(dev_plan)
    plan["resources"].append(
        {**_planned_queue(plan), "type": "gcp:pubsub/topic:Topic", "name": "events", "urn": "u"}
    )
    refused = local_stack.cli("up", "--plan-file", str(write_plan(tmp_path / "p.json", plan)))
    assert refused.returncode == 2
    assert "cannot be realised locally" in refused.stderr
    assert "events (gcp:pubsub/topic:Topic)" in refused.stderr
    assert not local_stack.paths.state_file.exists()
    assert not local_stack.paths.emulator_log.exists()

    (tmp_path / "bad.json").write_text("{not json")
    bad = local_stack.cli("up", "--plan-file", str(tmp_path / "bad.json"))
    assert bad.returncode == 1
    assert "is not JSON" in bad.stderr
    assert "python -m plan --stack dev --format json" in bad.stderr


def test_a_worker_port_taken_before_the_worker_binds_it_is_replaced(
    local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection: the first port handed to the worker is held by a real
    # listener, as when another process grabs a picked port in the meantime.
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    real_free_port = processes.free_port
    # The storage emulator (dead-letter bucket) picks its port first, then the worker.
    ports = iter([real_free_port("127.0.0.1"), taken])
    monkeypatch.setattr(
        processes, "free_port", lambda host: next(ports, None) or real_free_port(host)
    )
    try:
        running = runtime.up("dev", root=local_stack.root, say=lambda _: None)
    finally:
        holder.close()
    worker_url = running.state.outputs[OUTPUT_SERVICE_URL]
    assert worker_url != f"http://127.0.0.1:{taken}"
    assert httpx.get(worker_url + "/healthz", timeout=5).is_success
    assert "address already in use" in local_stack.paths.worker_log.read_text().lower()
    assert [p.role for p in running.state.processes] == ["emulator", "storage", "worker"]
    runtime.stop_running(running, lambda _: None)


def test_a_plan_the_policy_pack_refuses_starts_nothing(
    local_stack: LocalStack, dev_plan: dict[str, Any], tmp_path: Path
) -> None:
    plan = copy.deepcopy(dev_plan)
    _planned_queue(plan)["inputs"]["retryConfig"]["maxAttempts"] = -1
    refused = local_stack.cli("up", "--plan-file", str(write_plan(tmp_path / "bad.json", plan)))
    assert refused.returncode == 2
    assert "policy queue-bounded-retries" in refused.stderr
    assert not local_stack.paths.state_file.exists()
