"""Capacity of each queue under the expected volume: Little's law, drain time, warm instances.

For each queue the Operations component watches (its recorded share of the
expected volume) and the worker of the plan:

- arrival rate lambda = tasks a day / 86,400 s; in flight L = lambda x handler seconds
  (Little's law), against the queue's `max_concurrent_dispatches` and against the
  worker's `max_instances x request_concurrency`, and lambda against the queue's
  `max_dispatches_per_second`;
- the queue's throughput cap = min(rate, concurrent / handler s, instances x
  concurrency / handler s), and the time to drain a backlog of N tasks at that cap
  (N = the queue-depth alert threshold, and one day of tasks);
- a warning where `min_instances` is 0 although on average at least one task is
  always in flight (L >= 1): the service never idles, so scaling to zero saves
  nothing and each scale-up from zero after a lull puts a cold start in front of
  steady traffic.

Whether the queues' caps fit the service at all (the sum of their
`max_concurrent_dispatches` against instances x concurrency, deadlines against the
request timeout) is the plan's own capacity check, not repeated here. Pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from contract.resources import OPERATIONS_TYPE
from contract.routing import DEFAULT_QUEUE_KEY
from plan.cost import Volume, Worker
from plan.model import Plan

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class QueueCapacity:
    key: str
    queue: str  # the queue's path
    arrival_per_s: float
    in_flight: float  # Little's law: L = lambda x W
    max_dispatches_per_second: float
    max_concurrent_dispatches: int
    service_slots: int  # max_instances x request_concurrency
    throughput_cap_per_s: float
    backlog_tasks: int
    warnings: tuple[str, ...]

    def drain_seconds(self, tasks: float) -> float:
        return tasks / self.throughput_cap_per_s if self.throughput_cap_per_s else math.inf

    def to_json(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "warnings": list(self.warnings),
            "drainBacklogSeconds": self.drain_seconds(self.backlog_tasks),
        }


def _queues(plan: Plan) -> dict[str, tuple[str, float]]:
    """Queue key -> (queue path, tasks a day) as the Operations component recorded them."""
    found = plan.of_type(OPERATIONS_TYPE)
    if not found:
        return {}
    recorded = found[0].inputs.get("queues") or {}
    return {k: (str(v["queue"]), float(v["tasksPerDay"])) for k, v in recorded.items()}


def capacity(plan: Plan, volume: Volume, backlog_tasks: int) -> list[QueueCapacity]:
    """Every watched queue's capacity under `volume` (a plan without an Operations
    component: its one queue carries the whole volume)."""
    worker = Worker.of(plan)
    by_path = {q.path: q for q in plan.queues()}
    recorded = _queues(plan) or dict(
        (DEFAULT_QUEUE_KEY, (q.path, volume.tasks_per_day)) for q in plan.queues()[:1]
    )
    handler_s = volume.handler_seconds
    slots = worker.max_instances * worker.concurrency
    result = []
    for key, (path, per_day) in recorded.items():
        queue = by_path.get(path)
        rates = queue.rate_limits if queue else None
        rate = float(rates.max_dispatches_per_second or 0) if rates else 0.0
        concurrent = int(rates.max_concurrent_dispatches or 0) if rates else 0
        arrival = per_day / SECONDS_PER_DAY
        in_flight = arrival * handler_s
        cap = min(rate, concurrent / handler_s, slots / handler_s)
        warnings = []
        if arrival > rate:
            warnings.append(
                f"{arrival:.2f} tasks/s expected but max_dispatches_per_second is {rate:g}: "
                "the backlog grows without bound"
            )
        if in_flight > concurrent:
            warnings.append(
                f"Little's law: {in_flight:.1f} tasks in flight on average, more than "
                f"max_concurrent_dispatches ({concurrent})"
            )
        if in_flight > slots:
            warnings.append(
                f"Little's law: {in_flight:.1f} tasks in flight, more than the worker's "
                f"max_instances x request_concurrency ({slots})"
            )
        if worker.min_instances == 0 and in_flight >= 1:
            needed = math.ceil(in_flight / worker.concurrency)
            warnings.append(
                f"min_instances is 0 but {in_flight:.1f} tasks are in flight on average: the "
                f"service never idles; set min_instances to {needed} to keep cold starts out "
                "of steady traffic"
            )
        result.append(
            QueueCapacity(
                key=key,
                queue=path,
                arrival_per_s=arrival,
                in_flight=in_flight,
                max_dispatches_per_second=rate,
                max_concurrent_dispatches=concurrent,
                service_slots=slots,
                throughput_cap_per_s=cap,
                backlog_tasks=backlog_tasks,
                warnings=tuple(warnings),
            )
        )
    return result
