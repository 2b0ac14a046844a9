"""Bring a stack's plan up on this machine, report on it, take it down.

`up` evaluates the plan (or reads `--plan-file`), asks `devstack.realise` what
each resource becomes, then starts the emulator with its data file under
`.devstack/<stack>/`, creates the planned queue through the official
google-cloud-tasks client, starts the Cloud Storage emulator with the planned
dead-letter bucket (`devstack.local_storage`), starts the worker with the planned command and
environment on the stack's port (`devstack.ports`: the same after every
restart, so queued tasks still reach it), waits for both to be healthy and writes
`outputs.json`. `down` stops exactly the processes the state file records,
after checking each is still the process `up` started. `status` reports each
part's health (and each queue, through `devstack.queue_status`).

Deliberately not here: argument parsing and rendering (`devstack.local_cli`),
deciding what a resource becomes (`devstack.realise`), and restarting parts
that crash (a crash is reported; `up` again restarts the stack on the same data).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport
from google.protobuf import field_mask_pb2

from contract.names import (
    OUTPUT_EMULATOR_HOST,
    OUTPUT_EMULATOR_URL,
    OUTPUT_SERVICE_URL,
)
from devstack import hints, local_storage, processes
from devstack.alert_thresholds import planned_alerts
from devstack.ports import RequestedPorts, StackPorts, planned_ports, save_ports
from devstack.realise import LocalRealisation, PlanNotRealisable, QueueSpec, analyse
from devstack.state import (
    ProcessRecord,
    StackPaths,
    StackState,
    clear_state,
    load_state,
    save_state,
    write_outputs,
)
from plan.errors import PlanError, PlanFormatError
from plan.model import Plan
from plan.stack_config import stack_file
from policy.check import plan_violations

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCAL_HOST = "127.0.0.1"
EMULATOR_READY = re.compile(r"cloud-tasks-emulator ready grpc=(?P<grpc>\S+) http=(?P<http>\S+)")
EMULATOR_HEALTH = "/emulator/v1/health"
EMULATOR_CERTS = "/oauth2/v1/certs"
START_TIMEOUT_S = 20.0
WORKER_PORT_ATTEMPTS = 3

# What the worker inherits from this shell: enough to run Python, nothing else,
# so that it sees the planned environment as its container would.
_WORKER_PASSTHROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")

Say = Callable[[str], None]
_STOP_ORDER = ("emulator", "worker", local_storage.ROLE)


class StackError(Exception):
    """The stack cannot be brought up, or is in a state the user must resolve."""


@dataclass
class Running:
    """A stack this process brought up (its children, for the foreground mode)."""

    state: StackState
    paths: StackPaths
    children: dict[str, processes.Started] = field(default_factory=dict)
    # What the worker was started with, so that it can be restarted alone (reload).
    realisation: LocalRealisation | None = None
    certs_url: str = ""

    def adopt(self, started: processes.Started) -> None:
        """Record a process as soon as it exists, so `down` finds it even if `up` dies."""
        self.children[started.record.role] = started
        self.state.processes.append(started.record)
        save_state(self.paths, self.state)

    def drop(self, started: processes.Started) -> None:
        """Forget a process that exited while starting (it lost its port)."""
        self.children.pop(started.record.role, None)
        self.state.processes.remove(started.record)


@contextlib.contextmanager
def stack_lock(paths: StackPaths) -> Iterator[None]:
    """Serialise up/down of one stack across processes (two `up` would race for ports)."""
    paths.ensure()
    with (paths.dir / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackError(
                f"another devstack command is bringing stack {paths.stack!r} up or down "
                "right now; wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_plan(stack: str, plan_file: Path | None) -> tuple[Plan, str]:
    """The typed plan, and where it came from."""
    if plan_file is not None:
        try:
            data = json.loads(plan_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StackError(f"--plan-file {plan_file} does not exist") from None
        except json.JSONDecodeError as exc:
            raise StackError(
                f"--plan-file {plan_file} is not JSON ({exc}); write one with "
                f"`python -m plan --stack {stack} --format json > FILE`"
            ) from None
        if not isinstance(data, dict) or "resources" not in data:
            raise StackError(
                f"--plan-file {plan_file} is not a plan (no `resources`); write one with "
                f"`python -m plan --stack {stack} --format json > FILE`"
            )
        try:
            return Plan.from_json(data), str(plan_file)
        except PlanFormatError as exc:
            raise StackError(f"--plan-file {plan_file} is not a plan: {exc}") from None
    from plan.engine import evaluate

    try:
        evaluated = evaluate(stack)
    except PlanError as exc:
        raise StackError(f"cannot evaluate the plan of stack {stack!r}: {exc}") from exc
    return evaluated, f"the Pulumi program, stack {stack} (evaluated offline)"


def tasks_client(grpc_host: str) -> tasks_v2.CloudTasksClient:
    """The official client on an insecure channel to the emulator (a custom transport:
    https://cloud.google.com/python/docs/reference/cloudtasks/latest/google.cloud.tasks_v2.services.cloud_tasks.CloudTasksClient)."""
    channel = grpc.insecure_channel(grpc_host)
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))


_QUEUE_MASK = ["rate_limits", "retry_config", "stackdriver_logging_config", "http_target"]


def apply_queue(
    client: tasks_v2.CloudTasksClient, spec: QueueSpec, worker_port: int
) -> tasks_v2.Queue:
    """Create one planned queue, or bring an existing one (same data file) to the plan."""
    queue = spec.to_queue(LOCAL_HOST, worker_port)
    try:
        client.create_queue(parent=spec.parent, queue=queue, timeout=10)
    except gexc.AlreadyExists:
        client.update_queue(
            queue=queue, update_mask=field_mask_pb2.FieldMask(paths=_QUEUE_MASK), timeout=10
        )
    current = client.get_queue(name=spec.path, timeout=10)
    paused = current.state == tasks_v2.Queue.State.PAUSED
    if spec.desired_state == "PAUSED" and not paused:
        current = client.pause_queue(name=spec.path, timeout=10)
    elif spec.desired_state == "RUNNING" and paused:
        current = client.resume_queue(name=spec.path, timeout=10)
    return current


def apply_queues(
    client: tasks_v2.CloudTasksClient, realisation: LocalRealisation, worker_port: int
) -> dict[str, tasks_v2.Queue]:
    """Every planned queue, each with its own settings, by queue key."""
    return {key: apply_queue(client, spec, worker_port) for key, spec in realisation.queues.items()}


def _worker_env(realisation: LocalRealisation, port: int, certs_url: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in _WORKER_PASSTHROUGH if k in os.environ}
    # Containers set this in the image; here it keeps the worker's log lines
    # appearing in worker.log as they happen.
    env["PYTHONUNBUFFERED"] = "1"
    env.update(realisation.worker.process_env(host=LOCAL_HOST, port=port, certs_url=certs_url))
    return env


def _check_previous(paths: StackPaths, say: Say) -> None:
    previous = load_state(paths)
    if previous is None:
        return
    alive = [p for p in previous.processes if processes.is_ours(p)]
    if previous.processes and len(alive) == len(previous.processes):
        raise StackError(
            f"stack {paths.stack!r} is already up (pids "
            f"{', '.join(str(p.pid) for p in alive)}); see `{hints.python()} -m devstack status "
            f"--stack {paths.stack}` or stop it with `{hints.python()} -m devstack down --stack "
            f"{paths.stack}`"
        )
    gone = [p.role for p in previous.processes if p not in alive]
    say(
        f"previous run of stack {paths.stack!r} is partly down ({', '.join(gone)} gone): restarting"
    )
    for record in alive:
        say("  " + processes.stop(record))
    clear_state(paths)


def up(
    stack: str,
    *,
    root: Path | None = None,
    plan_file: Path | None = None,
    ports: RequestedPorts | None = None,
    say: Say = print,
) -> Running:
    """Realise the plan of stack and return once every part is healthy.

    Each part listens on the port remembered for the stack (`devstack.ports`),
    or on `ports` where given; the first `up` of a stack picks and remembers them.

    Raises StackError or PlanNotRealisable with a message for the user; on any
    failure everything started so far is stopped again.
    """
    paths = StackPaths.for_stack(stack, root)
    t0 = time.monotonic()
    with stack_lock(paths):
        _check_previous(paths, say)
        planned = planned_ports(paths, ports or RequestedPorts(), LOCAL_HOST)
        running = Running(
            state=StackState(
                stack=stack,
                plan_source="",
                started_at=time.time(),
                ready_seconds=0.0,
                plan_seconds=0.0,
            ),
            paths=paths,
        )
        try:
            # The emulator does not depend on the plan: it boots while the program
            # is evaluated, which takes most of the time to ready off the clock. A
            # plan file (or a missing stack) is judged first: it is quick, and a
            # bad one then starts nothing.
            quick = plan_file is not None or not _stack_file_exists(stack)
            realisation = _realisation(stack, plan_file, running, t0) if quick else None
            emulator = _spawn_emulator(running, planned)
            if realisation is None:
                realisation = _realisation(stack, None, running, t0)
            for warning in realisation.warnings:
                say(f"warning: {warning}")
            running.state.realised = [v.to_json() for v in realisation.by_verdict("realised")]
            running.state.no_local_effect = [
                v.to_json() for v in realisation.by_verdict("no local effect")
            ]
            running.state.substitutions = list(realisation.substitutions)
            _start(realisation, running, emulator, planned)
        except BaseException:
            _stop_children(running, say)
            clear_state(paths)
            raise
        running.state.ready_seconds = time.monotonic() - t0
        save_state(paths, running.state)
        return running


def _stack_file_exists(stack: str) -> bool:
    return stack_file(stack).exists()


def _realisation(
    stack: str, plan_file: Path | None, running: Running, t0: float
) -> LocalRealisation:
    plan, running.state.plan_source = load_plan(stack, plan_file)
    running.state.plan_seconds = time.monotonic() - t0
    running.state.alerts = [alert.to_json() for alert in planned_alerts(plan)]
    # The mandatory policy pack refuses such a plan at `pulumi preview`: so does `up`.
    violations = plan_violations(plan)
    if violations:
        raise PlanNotRealisable(
            [f"policy {v.rule}: {v.message}" for v in violations]
            + ["(the policy pack refuses this plan in the cloud too: fix the stack config)"]
        )
    return analyse(plan, os.environ)


def _spawn_emulator(running: Running, planned: RequestedPorts) -> processes.Started:
    paths = running.paths
    paths.ensure()
    argv = [
        sys.executable,
        "-m",
        "emulator",
        "--host",
        LOCAL_HOST,
        "--port",
        str(planned.emulator_grpc or 0),
        "--http-port",
        str(planned.emulator_http or 0),
        "--data",
        str(paths.emulator_data),
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    emulator = processes.spawn("emulator", argv, env=env, log=paths.emulator_log, cwd=REPO_ROOT)
    running.children["emulator"] = emulator
    running.state.processes.append(emulator.record)
    # Record pids as soon as they exist: a crash of `up` itself must not leave
    # processes that `down` cannot find.
    save_state(paths, running.state)
    return emulator


def _start(
    realisation: LocalRealisation,
    running: Running,
    emulator: processes.Started,
    planned: RequestedPorts,
) -> None:
    paths = running.paths
    bucket = local_storage.planned_bucket(realisation.outputs)
    if bucket is not None:  # the dead-letter bucket: the worker needs it from its start
        local_storage.start_storage(
            paths,
            LOCAL_HOST,
            bucket,
            adopt=running.adopt,
            drop=running.drop,
            avoid={p for p in (planned.worker, planned.emulator_grpc, planned.emulator_http) if p},
        )
    ready = processes.wait_for_line(emulator, EMULATOR_READY, START_TIMEOUT_S)
    grpc_host, http_url = ready["grpc"], ready["http"].rstrip("/")
    emulator.record.url = http_url
    emulator.record.health_path = EMULATOR_HEALTH

    client = tasks_client(grpc_host)
    try:
        # A remembered or requested worker port is used as is: the stack's queued tasks
        # carry it. Only a port picked now may be replaced if something takes it first.
        attempts = 1 if planned.worker else WORKER_PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = planned.worker or processes.free_port(LOCAL_HOST)
            running.realisation, running.certs_url = realisation, http_url + EMULATOR_CERTS
            worker = _spawn_worker(realisation, running, port, running.certs_url)
            # The queue is created while the worker boots: the two overlap.
            _apply_queue_or_explain(client, realisation, port, paths)
            try:
                processes.wait_healthy(worker, START_TIMEOUT_S)
                break
            except processes.ProcessError:
                # The port was free when picked, but something may have taken it
                # before the worker bound it: pick another, a few times.
                if attempt == attempts or not _lost_port_race(worker):
                    raise
                running.children.pop("worker")
                running.state.processes.remove(worker.record)
    finally:
        client.transport.close()  # type: ignore[no-untyped-call]
    processes.wait_healthy(emulator, START_TIMEOUT_S)
    worker_url = worker.record.url

    save_ports(paths, StackPorts(_port_of(grpc_host), _port_of(http_url), port))
    outputs = dict(realisation.outputs)
    outputs[OUTPUT_SERVICE_URL] = worker_url
    outputs[OUTPUT_EMULATOR_HOST] = grpc_host
    outputs[OUTPUT_EMULATOR_URL] = http_url
    outputs.update(local_storage.storage_outputs(running.children.get(local_storage.ROLE), bucket))
    running.state.outputs = outputs
    write_outputs(paths, outputs)


def _port_of(address: str) -> int:
    """The port of `host:port` or `http://host:port`."""
    return int(address.rstrip("/").rsplit(":", 1)[1])


def _spawn_worker(
    realisation: LocalRealisation, running: Running, port: int, certs_url: str
) -> processes.Started:
    worker = processes.spawn(
        "worker",
        realisation.worker.command,
        env=_worker_env(realisation, port, certs_url)
        | local_storage.worker_env(running.children.get(local_storage.ROLE)),
        log=running.paths.worker_log,
        cwd=REPO_ROOT,
        url=f"http://{LOCAL_HOST}:{port}",
        health_path=realisation.worker.health_path,
    )
    running.children["worker"] = worker
    running.state.processes.append(worker.record)
    save_state(running.paths, running.state)
    return worker


def restart_worker(running: Running, say: Say) -> processes.Started:
    """Stop the worker and start it again from the current code, on the same port with
    the same environment (reload). Queued tasks stay in the emulator; an attempt that
    meets the worker while it restarts fails and is retried by the queue's policy."""
    old = running.children["worker"]
    if running.realisation is None:
        raise StackError("the stack was not started by this process: nothing to reload")
    say("  " + processes.stop(old.record, child=old.process))
    running.state.processes.remove(old.record)
    port = int(old.record.url.rsplit(":", 1)[1])
    worker = _spawn_worker(running.realisation, running, port, running.certs_url)
    processes.wait_healthy(worker, START_TIMEOUT_S)
    save_state(running.paths, running.state)
    return worker


def _lost_port_race(worker: processes.Started) -> bool:
    if worker.process.poll() is None:
        return False
    with Path(worker.record.log).open("rb") as log:
        log.seek(worker.log_offset)
        return b"address already in use" in log.read().lower()


def _apply_queue_or_explain(
    client: tasks_v2.CloudTasksClient, realisation: LocalRealisation, port: int, paths: StackPaths
) -> None:
    for key, spec in realisation.queues.items():
        try:
            apply_queue(client, spec, port)
        except gexc.GoogleAPICallError as exc:
            raise StackError(
                f"the emulator refused the planned queue {key!r} ({spec.path}): {exc.message} "
                f"(see {paths.emulator_log})"
            ) from exc


def _stop_children(running: Running, say: Say) -> None:
    # Emulator first: once it stops dispatching, no attempt can hit a stopping worker;
    # storage last: the worker may be writing a dead letter until it stops.
    for role in _STOP_ORDER:
        started = running.children.get(role)
        if started is not None:
            say("  " + processes.stop(started.record, child=started.process))


def stop_running(running: Running, say: Say) -> None:
    """Stop a stack this process brought up (foreground mode) and forget it."""
    _stop_children(running, say)
    with contextlib.suppress(FileNotFoundError):
        current = load_state(running.paths)
        if current is not None and current.started_at == running.state.started_at:
            clear_state(running.paths)


def down(stack: str, *, root: Path | None = None, say: Say = print) -> int:
    """Stop the processes recorded for stack, and nothing else."""
    paths = StackPaths.for_stack(stack, root)
    with stack_lock(paths):
        state = load_state(paths)
        if state is None:
            say(f"stack {stack!r} is not up (nothing recorded in {paths.dir})")
            return 0
        state.stopping = True
        save_state(paths, state)
        for role in _STOP_ORDER:
            record = state.process(role)
            if record is not None:
                say(processes.stop(record))
        clear_state(paths)
    say(f"stack {stack!r} is down; data and logs stay in {paths.dir}")
    return 0


@dataclass
class PartStatus:
    role: str
    pid: int
    running: bool
    healthy: bool
    detail: str
    url: str
    log: str


def part_status(record: ProcessRecord) -> PartStatus:
    running = processes.is_ours(record)
    healthy, detail = (False, "not running")
    if running:
        healthy, detail = processes.check_health(record.url + record.health_path)
    return PartStatus(record.role, record.pid, running, healthy, detail, record.url, record.log)


def read_state(stack: str, root: Path | None = None) -> tuple[StackPaths, StackState | None]:
    paths = StackPaths.for_stack(stack, root)
    return paths, load_state(paths)
