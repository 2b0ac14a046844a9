"""Restarts lose no queued task: a stack keeps its addresses, and stopping never
depends on its output being readable."""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from google.api_core.exceptions import NotFound

from contract.names import OUTPUT_EMULATOR_HOST, OUTPUT_EMULATOR_URL, OUTPUT_SERVICE_URL
from contract.resources import RUN_SERVICE_TYPE
from devstack.ports import RequestedPorts, load_ports, ports_file
from devstack.processes import is_running
from devstack.runtime import tasks_client
from tests.devstack.stack_helpers import REPO_ROOT, LocalStack

pytestmark = pytest.mark.integration

ADDRESS_KEYS = (OUTPUT_SERVICE_URL, OUTPUT_EMULATOR_HOST, OUTPUT_EMULATOR_URL)


def _enqueue(stack: LocalStack, *args: str) -> str:
    """Send a smoke task with the enqueue CLI, as a user would; returns its full name."""
    return _enqueue_type(stack, "smoke", *args)


def _enqueue_type(stack: LocalStack, task_type: str, *args: str) -> str:
    outputs = str(stack.paths.outputs_file)
    done = subprocess.run(
        [sys.executable, "-m", "enqueue", "--outputs", outputs, "send", task_type, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _wait_delivered(stack: LocalStack, name: str, timeout_s: float = 30.0) -> None:
    """Until the emulator no longer holds the task (done) and the worker logged it."""
    client = tasks_client(stack.outputs()[OUTPUT_EMULATOR_HOST])
    task_id = name.rsplit("/", 1)[1]
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                task = client.get_task(name=name, timeout=5)
            except NotFound:
                break
            assert time.monotonic() < deadline, f"{name} not delivered: {task}"
            time.sleep(0.1)
    finally:
        client.transport.close()  # type: ignore[no-untyped-call]
    assert task_id in stack.paths.worker_log.read_text()


def test_a_restart_keeps_every_address(local_stack: LocalStack) -> None:
    local_stack.start()
    first = {k: local_stack.outputs()[k] for k in ADDRESS_KEYS}
    remembered = load_ports(local_stack.paths)
    assert remembered is not None
    assert first[OUTPUT_SERVICE_URL] == f"http://127.0.0.1:{remembered.worker}"
    assert local_stack.cli("down").returncode == 0
    assert ports_file(local_stack.paths).exists(), "down must keep the remembered ports"

    local_stack.start()
    assert {k: local_stack.outputs()[k] for k in ADDRESS_KEYS} == first


def test_a_task_queued_before_a_restart_reaches_the_new_worker(local_stack: LocalStack) -> None:
    local_stack.start()
    # Due after the restart: only the restarted worker can receive it.
    name = _enqueue(local_stack, "--delay", "3s", "--data", '{"queued": "before restart"}')
    assert local_stack.cli("down").returncode == 0

    local_stack.start()
    _wait_delivered(local_stack, name)


def test_a_task_sent_while_the_worker_was_killed_is_delivered_after_up(
    local_stack: LocalStack,
) -> None:
    local_stack.start()
    os.kill(local_stack.recorded_pids()["worker"], signal.SIGKILL)
    # Attempts fail against the dead worker; the task stays queued with its retries.
    name = _enqueue(local_stack, "--data", '{"sent": "while the worker was down"}')
    restarted = local_stack.up()  # through the command line: its message is checked
    assert "partly down" in restarted.stdout
    _wait_delivered(local_stack, name)


def test_chosen_ports_are_used_and_remembered(local_stack: LocalStack) -> None:
    ports = []
    for _ in range(3):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    grpc_port, http_port, worker_port = ports
    local_stack.start(
        ports=RequestedPorts(emulator_grpc=grpc_port, emulator_http=http_port, worker=worker_port)
    )
    outputs = local_stack.outputs()
    assert outputs[OUTPUT_EMULATOR_HOST] == f"127.0.0.1:{grpc_port}"
    assert outputs[OUTPUT_EMULATOR_URL] == f"http://127.0.0.1:{http_port}"
    assert outputs[OUTPUT_SERVICE_URL] == f"http://127.0.0.1:{worker_port}"
    assert local_stack.cli("down").returncode == 0
    local_stack.start()  # no flags: the chosen ports were remembered
    assert local_stack.outputs()[OUTPUT_SERVICE_URL] == f"http://127.0.0.1:{worker_port}"


def test_a_remembered_port_held_by_another_program_is_a_clear_error(
    local_stack: LocalStack,
) -> None:
    local_stack.start()
    worker_port = json.loads(ports_file(local_stack.paths).read_text())["worker"]
    assert local_stack.cli("down").returncode == 0
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", worker_port))
        holder.listen()
        refused = local_stack.cli("up", "--detach")
    assert refused.returncode == 1
    assert f"port {worker_port}" in refused.stderr
    assert "--worker-port" in refused.stderr
    assert not local_stack.paths.state_file.exists(), "nothing may be left running"


def test_ports_flags_refuse_non_ports(local_stack: LocalStack) -> None:
    bad = local_stack.cli("up", "--worker-port", "70000")
    assert bad.returncode == 2
    assert "70000 is not a port number" in bad.stderr


def test_ctrl_c_stops_everything_when_the_output_pipe_is_gone(local_stack: LocalStack) -> None:
    """`make local | tee log`, then Ctrl-C: tee dies with the same signal, so every
    later write of `up` fails. The stack must stop anyway."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack", "up", "--root", str(local_stack.root)],
        cwd=REPO_ROOT,
        stdout=write_end,
        stderr=write_end,
    )
    os.close(write_end)
    try:
        seen = b""
        deadline = time.monotonic() + 60
        while b"press Ctrl-C" not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            chunk = os.read(read_end, 65536)
            assert chunk, "up exited early:\n" + seen.decode(errors="replace")
            seen += chunk
        pids = local_stack.recorded_pids()
    finally:
        os.close(read_end)  # the reader is gone, like tee after Ctrl-C
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert not [pid for pid in pids.values() if is_running(pid)]
    assert not local_stack.paths.state_file.exists()


PROBE_V1 = """
from pydantic import BaseModel

from service import TaskContext, registry


class Probe(BaseModel):
    pass


@registry.task("probe-v1", payload=Probe)
def probe_v1(payload: Probe, ctx: TaskContext) -> dict[str, int]:
    return {"version": 1}
"""


def _read_until(fd: int, marker: bytes, seen: bytearray, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while marker not in seen:
        assert time.monotonic() < deadline, f"no {marker!r} in:\n" + seen.decode(errors="replace")
        chunk = os.read(fd, 65536)
        assert chunk, "up exited early:\n" + seen.decode(errors="replace")
        seen += chunk


def test_reload_restarts_the_worker_on_new_code_and_keeps_queued_tasks(
    local_stack: LocalStack, dev_plan: dict[str, Any], tmp_path: Path
) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    probe = modules / "reload_probe.py"
    probe.write_text(PROBE_V1)
    plan = copy.deepcopy(dev_plan)
    [service] = [r for r in plan["resources"] if r["type"] == RUN_SERVICE_TYPE]
    service["inputs"]["template"]["containers"][0]["envs"] += [
        {"name": "TASKS_EXTRA_MODULES", "value": "reload_probe"},
        {"name": "PYTHONPATH", "value": str(modules)},
    ]
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    read_end, write_end = os.pipe()
    argv = ["up", "--reload", "--plan-file", str(plan_file), "--root", str(local_stack.root)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack", *argv],
        cwd=REPO_ROOT,
        stdout=write_end,
        stderr=write_end,
    )
    os.close(write_end)
    seen = bytearray()
    try:
        _read_until(read_end, b"press Ctrl-C", seen)
        _read_until(read_end, b"reload: watching", seen)
        _read_until(read_end, str(modules).encode(), seen)
        first_worker = local_stack.recorded_pids()["worker"]
        # Queued before the reload, due after it.
        queued = _enqueue_type(local_stack, "probe-v1", "--delay", "3s")

        probe.write_text(PROBE_V1.replace("v1", "v2").replace('"version": 1', '"version": 2'))
        _read_until(read_end, b"worker reloaded", seen)
        assert local_stack.recorded_pids()["worker"] != first_worker
        # The new type exists only in the new code.
        _wait_delivered(local_stack, _enqueue_type(local_stack, "probe-v2"))
        log = local_stack.paths.worker_log.read_text()
        assert '"probe-v2"' in log or "probe-v2" in log
        # The task queued before the reload names a type the new code no longer has:
        # it still reaches the (new) worker, which answers for it.
        _wait_delivered(local_stack, queued)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        os.close(read_end)
