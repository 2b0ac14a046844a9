"""Several queues at once: each queue's dispatch rate against its cap, and end-to-end latency.

Run: ``.venv/bin/python benchmarks/multiqueue_bench.py [--quick]`` (``make bench`` runs
every benchmark). Prints figures, asserts nothing.

The parts are the real ones: the emulator (``emulator.testing.EmulatorProcess``), the
worker as ``python -m service`` with the token check on, trusting the emulator's OIDC
issuer (every delivery carries an RS256 ID token it verifies), and the enqueue helper
(``AsyncEnqueuer``) creating every task from outputs with ``queues`` and ``routes``, so
each task type reaches its queue through its route and the worker checks it arrived on
that queue (``TASKS_QUEUES`` / ``TASKS_ROUTES``). The task types are
``benchmarks.multiqueue_tasks``: handlers that do nothing.

Two scenarios, each for three caps (20/s, 50/s, 100/s):

* at once: one stack with three queues, one per cap, all running together;
* alone: today's single-queue stack (a worker without ``TASKS_QUEUES``), each cap
  on its own, one after the other.

Two measurements per queue:

* dispatch rate: the queue is filled while paused (``--seconds`` worth of tasks at
  its cap, plus its burst), then resumed (all three together in the first scenario);
  the rate is counted from the worker's "task ... ok" log lines over the second half
  of the deliveries, past the initial burst of ``max_burst_size`` tasks (the token
  bucket is full when a queue resumes). Target: within 5 % of the cap.
* end-to-end latency at half the cap: tasks are created open-loop at cap/2 for
  ``--seconds``; latency runs from just before ``CreateTask`` to the worker's log line
  written after the handler returned (same machine clock), p50 and p99.

The load generator, the emulator and the worker share the machine's cores, so
latencies are an upper bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from google.cloud import tasks_v2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.multiqueue_tasks import BENCH_TYPES
from contract.names import WORKER_ENV_QUEUES, WORKER_ENV_ROUTES
from emulator.testing import EmulatorProcess
from enqueue import AsyncEnqueuer, StackOutputs, TaskOutcome, TaskSpec, enqueue_many
from tests.service.support import WorkerProcess

PROJECT = "multiqueue-bench"
LOCATION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
INVOKER = f"tasks-invoker@{PROJECT}.iam.gserviceaccount.com"
AUDIENCE = "https://worker-multiqueue-bench.a.run.app"
CAPS = {"api": 20.0, "db": 50.0, "bulk": 100.0}
ROUTES = dict(zip(BENCH_TYPES, CAPS, strict=True))  # call_api -> api, ...
TYPE_OF = {key: task_type for task_type, key in ROUTES.items()}
# Far above cap x latency: the rate, not the concurrency, is what limits each queue.
MAX_CONCURRENT = 200
TARGET_ERROR = 0.05


@dataclass
class QueueFigures:
    """One queue's figures in one scenario."""

    key: str
    cap: float
    rate: float = 0.0
    delivered: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    latency_tasks: int = 0

    @property
    def error(self) -> float:
        return (self.rate - self.cap) / self.cap


def create_queue(client: Any, name: str, cap: float) -> str:
    queue = tasks_v2.Queue(
        name=f"{PARENT}/queues/{name}",
        rate_limits=tasks_v2.RateLimits(
            max_dispatches_per_second=cap, max_concurrent_dispatches=MAX_CONCURRENT
        ),
    )
    created: tasks_v2.Queue = client.create_queue(parent=PARENT, queue=queue)
    return created.name


def outputs_for(
    emulator: EmulatorProcess, worker: WorkerProcess, paths: Mapping[str, str]
) -> StackOutputs:
    """The outputs a stack with these queues exports; a single queue: today's outputs."""
    data: dict[str, Any] = {
        "project": PROJECT,
        "location": LOCATION,
        "queue": paths["default"],
        "service_url": worker.url,
        "audience": AUDIENCE,
        "invoker_email": INVOKER,
        "emulator_host": emulator.grpc_host,
        "emulator_url": emulator.http_url,
    }
    if len(paths) > 1:
        data["queues"] = dict(paths)
        data["routes"] = {t: k for t, k in ROUTES.items() if k in paths}
    return StackOutputs.from_mapping(data)


def start_worker(emulator: EmulatorProcess, env: Mapping[str, str]) -> WorkerProcess:
    return WorkerProcess(
        {
            "TASKS_AUDIENCE": AUDIENCE,
            "TASKS_ALLOWED_INVOKERS": INVOKER,
            "TASKS_CERTS_URL": emulator.certs_url,
            "TASKS_EXTRA_MODULES": "benchmarks.multiqueue_tasks",
            # A benchmark's worth of tasks fits; the default bound is far larger.
            "TASKS_IDEMPOTENCY_MAX_ENTRIES": "200000",
            **env,
        }
    )


def done_times(worker: WorkerProcess, queue_id: str) -> dict[str, float]:
    """Task id -> when the worker logged it done (after its handler returned)."""
    entries = worker.entries(lambda e: e.get("queue_name") == queue_id and e.get("outcome") == "ok")
    return {e["task_name"]: datetime.fromisoformat(e["time"]).timestamp() for e in entries}


def wait_for(worker: WorkerProcess, expected: Mapping[str, set[str]], timeout_s: float) -> None:
    """Until every task id in `expected[queue id]` was logged done on that queue."""
    deadline = time.monotonic() + timeout_s
    while True:
        missing = {q: len(ids - done_times(worker, q).keys()) for q, ids in expected.items()}
        if not any(missing.values()):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"tasks not delivered in {timeout_s:.0f} s, per queue: {missing}")
        time.sleep(0.25)


def steady_rate(times: list[float], burst: int) -> float:
    """Deliveries per second over the second half, past the initial burst."""
    times = sorted(times)
    start = max(burst, len(times) // 2)
    if len(times) < start + 2:
        return 0.0
    return (len(times) - 1 - start) / (times[-1] - times[start])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def fill(
    outputs: StackOutputs, counts: Mapping[str, int], types: Mapping[str, str]
) -> dict[str, set[str]]:
    """Create `counts[key]` tasks of type `types[key]` (routed to that queue key);
    returns the task ids created on each queue id."""
    specs = [
        TaskSpec(type=types[key], data={"n": i}) for key, n in counts.items() for i in range(n)
    ]
    created: dict[str, set[str]] = {}

    def collect(outcome: TaskOutcome) -> None:
        if outcome.name is not None and outcome.status == "created":
            queue_id, _, task_id = outcome.name.split("/")[-3:]
            created.setdefault(queue_id, set()).add(task_id)

    async with AsyncEnqueuer(outputs) as enqueuer:
        summary = await enqueue_many(enqueuer, specs, concurrency=64, on_outcome=collect)
    if summary.failed:
        raise SystemExit(f"enqueue failed: {summary.failed[0].reason}")
    return created


def measure_rates(
    client: Any,
    worker: WorkerProcess,
    outputs: StackOutputs,
    caps: Mapping[str, float],
    types: Mapping[str, str],
    seconds: float,
) -> dict[str, tuple[float, int]]:
    """Fill every queue while paused, resume them together; key -> (rate/s, delivered)."""
    paths = {key: outputs.stack_queues.paths[key] for key in caps}
    counts = {key: round(cap * seconds) + int(cap) for key, cap in caps.items()}
    for path in paths.values():
        client.pause_queue(name=path)
    created = asyncio.run(fill(outputs, counts, types))
    for path in paths.values():
        client.resume_queue(name=path)
    ids = {key: path.rsplit("/", 1)[1] for key, path in paths.items()}
    wait_for(worker, created, timeout_s=seconds * 3 + 30)
    result: dict[str, tuple[float, int]] = {}
    for key, cap in caps.items():
        times = list(done_times(worker, ids[key]).values())
        result[key] = (steady_rate(times, burst=int(cap)), len(times))
    return result


async def produce(
    outputs: StackOutputs, caps: Mapping[str, float], types: Mapping[str, str], seconds: float
) -> dict[str, dict[str, float]]:
    """Open-loop creates at cap/2 on every queue at once; key -> {task id: create time}."""
    created: dict[str, dict[str, float]] = {key: {} for key in caps}
    loop = asyncio.get_running_loop()
    async with AsyncEnqueuer(outputs) as enqueuer:
        start = loop.time() + 0.2

        async def one(key: str, at: float, n: int) -> None:
            await asyncio.sleep(max(0.0, at - loop.time()))
            began = time.time()
            result = await enqueuer.enqueue(TaskSpec(type=types[key], data={"n": n}))
            created[key][result.name.rsplit("/", 1)[1]] = began

        jobs = []
        for key, cap in caps.items():
            rate = cap / 2
            jobs += [one(key, start + i / rate, i) for i in range(int(rate * seconds))]
        await asyncio.gather(*jobs)
    return created


def measure_latency(
    worker: WorkerProcess,
    outputs: StackOutputs,
    caps: Mapping[str, float],
    types: Mapping[str, str],
    seconds: float,
) -> dict[str, list[float]]:
    """Key -> end-to-end latencies in ms of tasks created at half the queue's cap."""
    created = asyncio.run(produce(outputs, caps, types, seconds))
    ids = {key: outputs.stack_queues.paths[key].rsplit("/", 1)[1] for key in caps}
    wait_for(worker, {ids[k]: set(created[k]) for k in caps}, timeout_s=seconds + 30)
    latencies: dict[str, list[float]] = {}
    for key in caps:
        done = done_times(worker, ids[key])
        latencies[key] = [(done[t] - began) * 1000 for t, began in created[key].items()]
    return latencies


def figures(key: str, rate: tuple[float, int], latencies: list[float], cap: float) -> QueueFigures:
    return QueueFigures(
        key=key,
        cap=cap,
        rate=rate[0],
        delivered=rate[1],
        p50_ms=statistics.median(latencies),
        p99_ms=percentile(latencies, 0.99),
        latency_tasks=len(latencies),
    )


def at_once(
    emulator: EmulatorProcess, seconds: float, suffix: str
) -> tuple[list[QueueFigures], int]:
    """Three queues of one stack running together; also the count of refused tasks."""
    client = emulator.client()
    paths = {"default": create_queue(client, f"default-{suffix}", 500)}
    paths.update({key: create_queue(client, f"{key}-{suffix}", cap) for key, cap in CAPS.items()})
    env = {
        WORKER_ENV_QUEUES: json.dumps({k: p.rsplit("/", 1)[1] for k, p in paths.items()}),
        WORKER_ENV_ROUTES: json.dumps(ROUTES),
    }
    worker = start_worker(emulator, env)
    try:
        outputs = outputs_for(emulator, worker, paths)
        rates = measure_rates(client, worker, outputs, CAPS, TYPE_OF, seconds)
        latencies = measure_latency(worker, outputs, CAPS, TYPE_OF, seconds)
        refused = len(
            worker.entries(lambda e: e.get("outcome") in ("dead_letter", "unauthenticated"))
        )
    finally:
        worker.stop()
    rows = [figures(key, rates[key], latencies[key], cap) for key, cap in CAPS.items()]
    return rows, refused


def alone(emulator: EmulatorProcess, seconds: float, suffix: str) -> list[QueueFigures]:
    """Today's single-queue stack, one cap at a time, on a worker without routing."""
    client = emulator.client()
    worker = start_worker(emulator, {})
    rows = []
    try:
        for key, cap in CAPS.items():
            paths = {"default": create_queue(client, f"single-{key}-{suffix}", cap)}
            outputs = outputs_for(emulator, worker, paths)
            # The single queue is `default`; the type is the one the 3-queue stack routes.
            caps, types = {"default": cap}, {"default": TYPE_OF[key]}
            rates = measure_rates(client, worker, outputs, caps, types, seconds)
            latencies = measure_latency(worker, outputs, caps, types, seconds)
            rows.append(figures(key, rates["default"], latencies["default"], cap))
    finally:
        worker.stop()
    return rows


def render(multi: list[QueueFigures], single: list[QueueFigures], refused: int) -> None:
    def rate_cell(row: QueueFigures) -> str:
        return f"{row.rate:7.2f} {row.error * 100:+6.2f}%"

    def latency_cell(row: QueueFigures) -> str:
        return f"{row.p50_ms:7.1f} {row.p99_ms:7.1f}"

    print(
        f"{'queue':<6} {'cap/s':>6} | {'dispatch/s (err) 3 at once':>26} {'alone':>16} | "
        f"{'e2e ms at cap/2: p50 p99, 3 at once':>36} {'alone':>16}"
    )
    for m, s in zip(multi, single, strict=True):
        print(
            f"{m.key:<6} {m.cap:>6.0f} | {rate_cell(m):>26} {rate_cell(s):>16} | "
            f"{latency_cell(m):>36} {latency_cell(s):>16}"
        )
    worst = max(abs(r.error) for r in (*multi, *single))
    verdict = "met" if worst <= TARGET_ERROR else "NOT met"
    print(f"rate within {TARGET_ERROR:.0%} of every cap: {verdict} (worst {worst:.2%})")
    counts = ", ".join(f"{r.key} {r.delivered}+{r.latency_tasks}" for r in multi)
    print(
        f"tasks delivered at once (rate + latency runs): {counts}; refused by the worker: {refused}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 s per measurement, not 10 s")
    parser.add_argument("--seconds", type=float, help="seconds of work per measurement")
    args = parser.parse_args()
    seconds = args.seconds or (4.0 if args.quick else 10.0)
    suffix = str(time.time_ns() % 10**8)
    print(
        f"multiqueue benchmark: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
        f"{seconds:g} s per measurement, worker token check on (emulator OIDC)"
    )
    with EmulatorProcess() as emulator:
        multi, refused = at_once(emulator, seconds, suffix)
        single = alone(emulator, seconds, suffix)
    render(multi, single, refused)
    return 0


if __name__ == "__main__":
    sys.exit(main())
