"""The queue signals the stack's alerts watch, as Prometheus text at ``GET /metrics``.

The alert policies of the cloud stack (components/signals.py) watch Cloud
Tasks' published metrics; this module exposes the same quantities of the
emulator's queues, named after Google's metric types, in the Prometheus text
exposition format 0.0.4
(https://prometheus.io/docs/instrumenting/exposition_formats/):

* ``cloudtasks_queue_depth`` (gauge; Google: ``queue/depth``): tasks in the queue;
* ``cloudtasks_queue_tasks_in_flight`` (gauge): attempts running now;
* ``cloudtasks_queue_paused`` (gauge, 1 or 0);
* ``cloudtasks_queue_oldest_task_age_seconds`` (gauge, emulator only): how late the
  most overdue task waiting for an attempt already is (0 when none is due). Google
  publishes no age metric; its ``task_attempt_delays`` shows the same lateness once
  the attempt starts, this shows it while the task still waits (a paused queue);
* ``cloudtasks_queue_task_attempt_delays_seconds`` (histogram; Google:
  ``queue/task_attempt_delays``, in ms there): attempt dispatch time minus its
  scheduled time;
* ``cloudtasks_queue_task_attempt_count_total`` (counter; Google:
  ``queue/task_attempt_count``) by ``response_code`` (the canonical code in lower
  case, as Google labels it) and ``response_code_class`` (``2xx``, ``4xx``, ``5xx``,
  the classes the failure-ratio alerts sum over, from ``contract.gcp_metrics``);
* ``cloudtasks_queue_tasks_dispatched_total`` and ``..._completed_total`` (counters):
  attempts started, tasks done with a 2xx;
* ``cloudtasks_queue_dropped_tasks_total`` (counter; the stack's log-based metric
  ``tasks_pipeline/dropped_tasks``): tasks deleted after their last attempt failed.

Every series carries ``queue`` (the full name) and ``queue_id`` (its last segment,
Monitoring's resource label). The text is written here by hand: the
``prometheus_client`` library is not a dependency of the project, and the format
is small.

Cost: the dispatcher calls :meth:`AttemptMetrics.attempt` once per finished attempt
(a dict increment and a bucket search); everything else is computed when
``/metrics`` is read. Counters live in memory and start at zero with the process,
as a Prometheus counter may. Deliberately not here: deciding anything.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import grpc

from contract.gcp_metrics import CLIENT_ERROR_CODES, SERVER_ERROR_CODES, SUCCESS_CODE
from emulator.state import QueueState, TaskState

if TYPE_CHECKING:
    from emulator.core import Emulator

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

DELAY_BUCKETS_S: Final = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 3600.0)
"""Upper bounds of the attempt-delay histogram: from "on time" to an hour late."""


def _class_of(code: str) -> str:
    if code == SUCCESS_CODE:
        return "2xx"
    if code in CLIENT_ERROR_CODES:
        return "4xx"
    if code in SERVER_ERROR_CODES:
        return "5xx"
    return "other"


# Looked up once per attempt: the label pair of every gRPC code, computed here once.
_LABELS: Final[dict[grpc.StatusCode, tuple[str, str]]] = {
    code: (code.name.lower(), _class_of(code.name.lower())) for code in grpc.StatusCode
}


@dataclass
class _QueueCounters:
    attempts: dict[grpc.StatusCode, int] = field(default_factory=dict)
    delay_buckets: list[int] = field(default_factory=lambda: [0] * (len(DELAY_BUCKETS_S) + 1))
    delay_sum: float = 0.0


class AttemptMetrics:
    """Per-queue attempt counters, fed by the dispatcher as each attempt ends."""

    def __init__(self) -> None:
        # By queue object, not name: a protobuf field read costs more than the rest.
        # A queue deleted and created again under its name starts from zero.
        self.queues: dict[QueueState, _QueueCounters] = {}

    def attempt(self, ts: TaskState, code: grpc.StatusCode) -> None:
        """Count one finished attempt of ``ts`` with outcome ``code`` (OK for a 2xx)."""
        counters = self.queues.get(ts.queue)
        if counters is None:
            counters = self.queues[ts.queue] = _QueueCounters()
        counters.attempts[code] = counters.attempts.get(code, 0) + 1
        la = ts.pb.last_attempt  # set when the attempt started
        sent, due = la.dispatch_time, la.schedule_time
        delay = (sent.seconds - due.seconds) + (sent.nanos - due.nanos) * 1e-9
        if delay < 0.0:
            delay = 0.0
        counters.delay_buckets[bisect.bisect_left(DELAY_BUCKETS_S, delay)] += 1
        counters.delay_sum += delay


# --- the exposition --------------------------------------------------------------------


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    text = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + text + "}" if text else ""


@dataclass
class _Family:
    name: str
    kind: str  # gauge, counter, histogram
    help: str
    samples: list[str] = field(default_factory=list)

    def add(self, labels: list[tuple[str, str]], value: float, suffix: str = "") -> None:
        self.samples.append(f"{self.name}{suffix}{_labels(labels)} {_number(value)}")

    def lines(self) -> Iterator[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        yield from self.samples


def render(emulator: Emulator) -> str:
    """The whole exposition for the emulator's current queues."""
    now = emulator.clock.now()
    metrics = emulator.dispatcher.metrics
    drops = emulator.registry.drops.counts
    depth = _Family("cloudtasks_queue_depth", "gauge", "Tasks in the queue (Google: queue/depth).")
    in_flight = _Family("cloudtasks_queue_tasks_in_flight", "gauge", "Attempts running now.")
    paused = _Family("cloudtasks_queue_paused", "gauge", "1 when the queue is paused, else 0.")
    oldest = _Family(
        "cloudtasks_queue_oldest_task_age_seconds",
        "gauge",
        "How late the most overdue task still waiting for an attempt is (0 when none is due).",
    )
    delays = _Family(
        "cloudtasks_queue_task_attempt_delays_seconds",
        "histogram",
        "Attempt dispatch time minus its scheduled time (Google: queue/task_attempt_delays).",
    )
    attempts = _Family(
        "cloudtasks_queue_task_attempt_count_total",
        "counter",
        "Finished attempts by response code (Google: queue/task_attempt_count).",
    )
    dispatched = _Family("cloudtasks_queue_tasks_dispatched_total", "counter", "Attempts started.")
    completed = _Family(
        "cloudtasks_queue_tasks_completed_total",
        "counter",
        "Tasks done: their attempt was answered 2xx and they were deleted.",
    )
    dropped = _Family(
        "cloudtasks_queue_dropped_tasks_total",
        "counter",
        "Tasks deleted after their last attempt failed (the stack's log-based metric "
        "tasks_pipeline/dropped_tasks).",
    )
    for name, q in sorted(emulator.queues.items()):
        queue = [("queue", name), ("queue_id", name.rsplit("/", 1)[-1])]
        counters = metrics.queues.get(q) or _QueueCounters()
        depth.add(queue, len(q.tasks))
        in_flight.add(queue, q.in_flight)
        paused.add(queue, 0 if q.running else 1)
        eta = min((eta for eta, _ in q.waiting()), default=None)
        oldest.add(queue, max(0.0, now - eta) if eta is not None else 0.0)
        cumulative = 0
        for bound, count in zip((*DELAY_BUCKETS_S, math.inf), counters.delay_buckets, strict=True):
            cumulative += count
            delays.add([*queue, ("le", _number(bound))], cumulative, "_bucket")
        delays.add(queue, counters.delay_sum, "_sum")
        delays.add(queue, cumulative, "_count")
        finished = 0
        for code, count in sorted(counters.attempts.items(), key=lambda item: item[0].name):
            response_code, response_class = _LABELS[code]
            labels = [*queue, ("response_code", response_code)]
            attempts.add([*labels, ("response_code_class", response_class)], count)
            finished += count
        dispatched.add(queue, finished + q.in_flight)
        completed.add(queue, counters.attempts.get(grpc.StatusCode.OK, 0))
        dropped.add(queue, drops.get(name, 0))
    families = (depth, in_flight, paused, oldest, delays, attempts, dispatched, completed, dropped)
    total = _Family(
        "cloudtasks_emulator_dispatched_total", "counter", "Attempts started, every queue."
    )
    total.add([], emulator.dispatched)
    lines = [line for family in (*families, total) for line in family.lines()]
    return "\n".join(lines) + "\n"
