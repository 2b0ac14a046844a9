"""The live values of a local stack's signals, each against the alert that watches it.

A `Sample` is what the stack shows at one moment: the emulator's `GET /metrics`
(Prometheus text, emulator/metrics.py; read here with a few lines of parsing,
since devstack runs the emulator as a process and imports none of it) and the
worker's outcome lines from `.devstack/<stack>/worker.log` (one JSON line per task
with `status` and `latency_ms`, and one per dead letter with
`dead_letter.queue_name`: what Cloud Run's request metrics and the stack's
`dead_letters` log-based metric count in the cloud).

`evaluate` measures each `PlannedAlert` (devstack.alert_thresholds: the plan's own
policies) over a window, as Cloud Monitoring would over its alignment period:

- `cloudtasks.../queue/depth`: `cloudtasks_queue_depth` now;
- `cloudtasks.../queue/task_attempt_delays` (ms): the larger of the oldest waiting
  task's age and the window's p99 attempt delay;
- `cloudtasks.../queue/task_attempt_count`: attempts with the filter's response
  codes in the window; for a ratio, over all the window's attempts;
- `logging.../dropped_tasks`: `cloudtasks_queue_dropped_tasks_total` in the window;
- `logging.../dead_letters`: the worker's dead-letter lines for that queue in the window;
- `run.../request_count`: the worker's answers of the filter's class in the window;
  for a ratio, over all its answers;
- `run.../request_latencies` (ms): the window's p99 of the worker's `latency_ms`.

An alert "fires" here as soon as its value is above the threshold; Cloud
Monitoring also waits for the condition's duration (`PlannedAlert.duration_s`),
which the view shows. Deliberately not here: drawing (`devstack.signals_view`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

from devstack.alert_thresholds import WORKER, PlannedAlert

METRICS_TIMEOUT_S = 3.0
_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
Labels = tuple[tuple[str, str], ...]


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text -> sample name -> [(labels, value)] (comments skipped)."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        match = _SAMPLE.fullmatch(line.strip()) if not line.startswith("#") else None
        if match is None:
            continue
        labels = {
            k: v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
            for k, v in _PAIR.findall(match.group(2) or "")
        }
        samples.setdefault(match.group(1), []).append((labels, float(match.group(3))))
    return samples


@dataclass(frozen=True)
class WorkerEvent:
    at: float  # seconds since the epoch (the line's `time`)
    status: int | None  # the answer of a task's outcome line
    latency_ms: float | None
    dead_letter_queue: str | None  # the queue id of a dead-letter line


@dataclass
class WorkerLog:
    """The worker's log read incrementally: only complete lines, each once."""

    path: Path
    offset: int = 0
    events: list[WorkerEvent] = field(default_factory=list)

    def read(self, since: float) -> None:
        """Read what was appended; forget events older than `since`."""
        try:
            with self.path.open("rb") as handle:
                if handle.seek(0, 2) < self.offset:
                    self.offset = 0  # truncated or replaced (`reset`, a new `up`): read it anew
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            data = b""
        end = data.rfind(b"\n") + 1
        self.offset += end
        for raw in data[:end].decode("utf-8", errors="replace").splitlines():
            event = _event(raw)
            if event is not None:
                self.events.append(event)
        self.events = [e for e in self.events if e.at >= since]


def _event(raw: str) -> WorkerEvent | None:
    try:
        entry = json.loads(raw)
        at = datetime.fromisoformat(str(entry["time"])).timestamp()
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(entry, dict):
        return None
    letter = entry.get("dead_letter")
    if isinstance(letter, dict):
        return WorkerEvent(at, None, None, str(letter.get("queue_name") or ""))
    status, latency = entry.get("status"), entry.get("latency_ms")
    if isinstance(status, int) and isinstance(latency, int | float):
        return WorkerEvent(at, status, float(latency), None)
    return None


@dataclass(frozen=True)
class Sample:
    """The emulator's metrics at one moment (`at`: seconds since the epoch)."""

    at: float
    metrics: Mapping[str, list[tuple[dict[str, str], float]]]

    @classmethod
    def zero(cls, at: float) -> Sample:
        """Every counter at zero: the emulator as it started."""
        return cls(at, {})

    def values(self, name: str, queue: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        return [
            (lbl, value)
            for lbl, value in self.metrics.get(name, [])
            if lbl.get("queue") == queue and all(lbl.get(k) == v for k, v in labels.items())
        ]

    def total(self, name: str, queue: str, codes: Iterable[str] = ()) -> float:
        wanted = set(codes)
        return sum(
            value
            for lbl, value in self.values(name, queue)
            if not wanted or lbl.get("response_code") in wanted
        )


def scrape(emulator_url: str, at: float) -> Sample:
    """The emulator's `/metrics` now; raises httpx.HTTPError when it does not answer."""
    response = httpx.get(f"{emulator_url.rstrip('/')}/metrics", timeout=METRICS_TIMEOUT_S)
    response.raise_for_status()
    return Sample(at, parse_metrics(response.text))


# --- evaluation ----------------------------------------------------------------------------

ATTEMPTS = "cloudtasks_queue_task_attempt_count_total"
DELAYS = "cloudtasks_queue_task_attempt_delays_seconds"


@dataclass(frozen=True)
class QueueLive:
    """A queue's live values, shown whether or not an alert watches them."""

    key: str
    path: str
    depth: int
    in_flight: int
    paused: bool
    oldest_age_s: float
    attempts_by_class: dict[str, int]  # in the window
    dropped: int  # in the window
    dead_letters: int  # in the window


@dataclass(frozen=True)
class Reading:
    """One alert measured locally: `value` None when there is nothing to measure yet."""

    alert: PlannedAlert
    value: float | None
    detail: str = ""  # e.g. "3 of 12 attempts"

    @property
    def fires(self) -> bool:
        return self.value is not None and self.value > self.alert.threshold


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def _histogram_p99_s(now: Sample, base: Sample, queue: str) -> float | None:
    """The window's p99 attempt delay, interpolated within its bucket as Prometheus'
    `histogram_quantile` does (the lower bound when it falls in the +Inf bucket)."""
    old = {lbl.get("le"): value for lbl, value in base.values(f"{DELAYS}_bucket", queue)}
    buckets = sorted(
        (float(str(lbl.get("le", "+Inf")).replace("Inf", "inf")), value - old.get(lbl.get("le"), 0))
        for lbl, value in now.values(f"{DELAYS}_bucket", queue)
    )
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = 0.99 * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper) or count == below:
                return lower
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def _gauge(sample: Sample, name: str, queue: str) -> float:
    return sum(value for _, value in sample.values(name, queue))


def queue_live(key: str, path: str, now: Sample, base: Sample, log: WorkerLog) -> QueueLive:
    by_class: dict[str, int] = {}
    old = {lbl.get("response_code", ""): v for lbl, v in base.values(ATTEMPTS, path)}
    for lbl, value in now.values(ATTEMPTS, path):
        grown = int(value - old.get(lbl.get("response_code", ""), 0.0))
        cls = lbl.get("response_code_class", "other")
        by_class[cls] = by_class.get(cls, 0) + grown
    queue_id = path.rsplit("/", 1)[-1]
    dropped = "cloudtasks_queue_dropped_tasks_total"
    return QueueLive(
        key=key,
        path=path,
        depth=int(_gauge(now, "cloudtasks_queue_depth", path)),
        in_flight=int(_gauge(now, "cloudtasks_queue_tasks_in_flight", path)),
        paused=_gauge(now, "cloudtasks_queue_paused", path) > 0,
        oldest_age_s=_gauge(now, "cloudtasks_queue_oldest_task_age_seconds", path),
        attempts_by_class=by_class,
        dropped=int(_gauge(now, dropped, path) - _gauge(base, dropped, path)),
        dead_letters=sum(1 for e in log.events if e.dead_letter_queue == queue_id),
    )


def _queue_reading(
    alert: PlannedAlert, path: str, now: Sample, base: Sample, log: WorkerLog
) -> Reading:
    metric = alert.metric_type
    if metric.endswith("/queue/depth"):
        return Reading(alert, _gauge(now, "cloudtasks_queue_depth", path))
    if metric.endswith("/queue/task_attempt_delays"):
        waiting = _gauge(now, "cloudtasks_queue_oldest_task_age_seconds", path)
        late = _histogram_p99_s(now, base, path) or 0.0
        return Reading(alert, max(waiting, late) * 1000.0)
    if metric.endswith("/queue/task_attempt_count"):
        count = now.total(ATTEMPTS, path, alert.response_codes) - base.total(
            ATTEMPTS, path, alert.response_codes
        )
        if not alert.ratio:
            return Reading(alert, count)
        every = now.total(ATTEMPTS, path) - base.total(ATTEMPTS, path)
        if not every:
            return Reading(alert, None, "no attempts")
        return Reading(alert, count / every, f"{count:g} of {every:g} attempts")
    if metric.endswith("/dropped_tasks"):
        name = "cloudtasks_queue_dropped_tasks_total"
        return Reading(alert, _gauge(now, name, path) - _gauge(base, name, path))
    if metric.endswith("/dead_letters"):
        queue_id = path.rsplit("/", 1)[-1]
        return Reading(alert, sum(1 for e in log.events if e.dead_letter_queue == queue_id))
    return Reading(alert, None, "not measured locally")


def _worker_reading(alert: PlannedAlert, log: WorkerLog) -> Reading:
    answers = [e for e in log.events if e.status is not None]
    if alert.metric_type.endswith("/request_count"):
        cls = alert.response_code_class
        hits = [e for e in answers if not cls or f"{(e.status or 0) // 100}xx" == cls]
        if not alert.ratio:
            return Reading(alert, len(hits))
        if not answers:
            return Reading(alert, None, "no requests")
        return Reading(alert, len(hits) / len(answers), f"{len(hits)} of {len(answers)} answers")
    if alert.metric_type.endswith("/request_latencies"):
        p99 = _p99([e.latency_ms for e in answers if e.latency_ms is not None])
        return Reading(alert, p99, "" if p99 is not None else "no requests")
    return Reading(alert, None, "not measured locally")


def evaluate(
    alerts: Iterable[PlannedAlert],
    queues: Mapping[str, str],
    now: Sample,
    base: Sample,
    log: WorkerLog,
) -> list[Reading]:
    """Each alert measured between `base` and `now` (`queues`: key -> full path)."""
    readings = []
    for alert in alerts:
        if alert.subject == WORKER:
            readings.append(_worker_reading(alert, log))
        elif alert.subject in queues:
            readings.append(_queue_reading(alert, queues[alert.subject], now, base, log))
    return readings


@dataclass
class Window:
    """Samples kept so that a count covers the alert window (5 minutes) once the view has
    watched that long; before that, it covers what was seen since `origin` (the first
    sample: zero counters at the stack's start)."""

    seconds: float
    samples: list[Sample]

    def add(self, sample: Sample) -> Sample:
        """Keep `sample`; the baseline for it: the newest sample at least `seconds` old,
        else the oldest one kept."""
        self.samples.append(sample)
        cutoff = sample.at - self.seconds
        older = [s for s in self.samples if s.at <= cutoff]
        if older:
            self.samples = [older[-1], *(s for s in self.samples if s.at > cutoff)]
        return self.samples[0]
