"""What the stack watches, defined once: each signal's filter, aggregation and threshold.

A `Signal` is one thing worth waking someone for (a queue's depth, the worker's
5xx ratio...): the Cloud Monitoring filter that selects it, how its points are
aligned and reduced, and the threshold. `components.monitoring` turns each
signal into an alert policy condition and a dashboard chart with its threshold
line, so an alert and the chart beside it can never disagree.

Thresholds come from `OperationsConfig`; the two durations left at 0 are derived
here from the settings they depend on:

- the oldest-task age (Cloud Tasks publishes no age metric; attempts running
  late, `queue/task_attempt_delays`, are what a backlog makes grow): the queue's
  `max_backoff`, the longest wait the queue itself imposes, at least 5 minutes;
- the worker's p99 latency: half the dispatch deadline, so attempts are seen
  slowing down well before Cloud Tasks starts cutting them.

Metric types and labels are those of `contract.gcp_metrics` (Google's published
list) or of the log-based metrics declared here (`LOG_METRICS`); tests check
every filter against both. Pure: no Pulumi, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from components.config import OperationsConfig, QueueConfig
from contract.gcp_metrics import (
    AUTH_FAILURE_CODES,
    CLIENT_ERROR_CODES,
    CLOUD_RUN_REVISION,
    CLOUD_TASKS_QUEUE,
    LOG_BASED_METRIC_PREFIX,
    SERVER_ERROR_CODES,
)

MIN_OLDEST_TASK_AGE_S: Final = 300
ALERT_WINDOW_S: Final = 300
"""Alignment period and duration of every condition: 5 minutes, long enough that one
slow attempt or one failed task does not page, short enough to be told before a customer."""

# --- log-based metrics (no built-in metric counts these) ------------------------------

LOG_METRIC_NAMESPACE: Final = "tasks_pipeline"
"""Prefix of this stack's log-based metric names, so they cannot collide with others'."""


@dataclass(frozen=True)
class LogMetric:
    """A counter log-based metric (`gcp.logging.Metric`, DELTA INT64)."""

    name: str  # tasks_pipeline/dead_letters
    description: str
    resource_type: str  # the monitored resource of the log entries it counts
    labels: Mapping[str, str] = field(default_factory=dict)  # label -> extractor

    @property
    def type(self) -> str:
        return f"{LOG_BASED_METRIC_PREFIX}{self.name}"

    def log_filter(self, service_name: str) -> str:
        if self.name == DEAD_LETTERS:
            # service.deadletter logs every dead letter with a `dead_letter` object.
            return (
                f'resource.type="{CLOUD_RUN_REVISION}" AND '
                f'resource.labels.service_name="{service_name}" AND '
                "jsonPayload.dead_letter.reason:*"
            )
        # Cloud Tasks' own attempt log (queue stackdriver_logging_config): a failed
        # attempt with no retryTime is the last one, after which the task is deleted.
        return (
            f'resource.type="{CLOUD_TASKS_QUEUE}" AND '
            'logName:"cloudtasks.googleapis.com%2Ftask_operations_log" AND '
            "jsonPayload.attemptResponseLog.status:* AND "
            'jsonPayload.attemptResponseLog.status!="OK" AND '
            "NOT jsonPayload.attemptResponseLog.retryTime:*"
        )


DEAD_LETTERS: Final = f"{LOG_METRIC_NAMESPACE}/dead_letters"
DROPPED_TASKS: Final = f"{LOG_METRIC_NAMESPACE}/dropped_tasks"

LOG_METRICS: Final[dict[str, LogMetric]] = {
    DEAD_LETTERS: LogMetric(
        DEAD_LETTERS,
        "Dead letters the worker wrote (a task that can never succeed, recorded and "
        "acknowledged), by queue.",
        CLOUD_RUN_REVISION,
        {"queue_name": "EXTRACT(jsonPayload.dead_letter.queue_name)"},
    ),
    DROPPED_TASKS: LogMetric(
        DROPPED_TASKS,
        "Tasks Cloud Tasks gave up on (last attempt failed, no retry scheduled; the task "
        "is deleted), from the queue's attempt log.",
        CLOUD_TASKS_QUEUE,
    ),
}
"""The stack's log-based metrics, by name. Dropped tasks are only counted for the share of
operations the queue logs (`log_sampling_ratio`)."""


# --- signals ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Aggregation:
    aligner: str
    reducer: str | None = None
    group_by: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "alignmentPeriod": f"{ALERT_WINDOW_S}s",
            "perSeriesAligner": self.aligner,
        }
        if self.reducer:
            data["crossSeriesReducer"] = self.reducer
            data["groupByFields"] = list(self.group_by)
        return data


@dataclass(frozen=True)
class Signal:
    """One watched quantity and its threshold (crossed upwards = the alert fires)."""

    key: str  # queue_depth, worker_5xx_ratio, ...
    title: str
    metric_type: str
    filter: str
    aggregation: Aggregation
    threshold: float
    unit: str  # how the threshold reads: "tasks", "ms", "ratio", "count"
    why: str  # the alert's documentation: what it means and where to look
    denominator_filter: str | None = None  # a ratio: filter / denominator_filter

    @property
    def is_ratio(self) -> bool:
        return self.denominator_filter is not None


def _select(metric_type: str, resource_type: str, **resource_labels: str) -> str:
    parts = [f'metric.type="{metric_type}"', f'resource.type="{resource_type}"']
    parts += [f'resource.label.{label}="{value}"' for label, value in resource_labels.items()]
    return " AND ".join(parts)


def _one_of(label: str, values: Sequence[str]) -> str:
    quoted = ",".join(f'"{v}"' for v in values)
    return f"metric.label.{label}=one_of({quoted})"


def oldest_task_age_threshold_s(queue: QueueConfig, operations: OperationsConfig) -> int:
    """Seconds late an attempt may run before the age alert fires (see the module doc)."""
    if operations.alert_oldest_task_age:
        return operations.alert_oldest_task_age
    return max(MIN_OLDEST_TASK_AGE_S, queue.max_backoff)


def latency_threshold_s(operations: OperationsConfig, dispatch_deadline_s: int) -> float:
    """The worker's p99 latency above which the latency alert fires."""
    if operations.alert_latency:
        return float(operations.alert_latency)
    return dispatch_deadline_s / 2


TASKS = "cloudtasks.googleapis.com/queue/"
ATTEMPTS = f"{TASKS}task_attempt_count"
BY_QUEUE = ("resource.label.queue_id",)


def queue_signals(queue_id: str, queue: QueueConfig, operations: OperationsConfig) -> list[Signal]:
    """Every signal of one queue (`queue_id`: the queue's short id, as Monitoring labels it)."""
    attempts = _select(ATTEMPTS, CLOUD_TASKS_QUEUE, queue_id=queue_id)
    count = Aggregation("ALIGN_DELTA", "REDUCE_SUM", BY_QUEUE)
    rate = Aggregation("ALIGN_RATE", "REDUCE_SUM", BY_QUEUE)
    age_s = oldest_task_age_threshold_s(queue, operations)
    return [
        Signal(
            "queue_depth",
            "tasks in the queue",
            f"{TASKS}depth",
            _select(f"{TASKS}depth", CLOUD_TASKS_QUEUE, queue_id=queue_id),
            Aggregation("ALIGN_MAX", "REDUCE_SUM", BY_QUEUE),
            operations.alert_queue_depth,
            "tasks",
            "Tasks arrive faster than the queue dispatches them (rate limits, a paused "
            "queue, or a slow or failing worker). Compare the attempt outcomes below.",
        ),
        Signal(
            "oldest_task_age",
            "attempts running late (p99)",
            f"{TASKS}task_attempt_delays",
            _select(f"{TASKS}task_attempt_delays", CLOUD_TASKS_QUEUE, queue_id=queue_id),
            Aggregation("ALIGN_PERCENTILE_99", "REDUCE_MAX", BY_QUEUE),
            age_s * 1000,
            "ms",
            f"Attempts start more than {age_s}s after their scheduled time: the backlog "
            "is ageing (the queue's max_concurrent_dispatches or max_dispatches_per_second, "
            "or the worker's max_instances, is the bottleneck).",
        ),
        Signal(
            "failure_ratio_5xx",
            "attempts failing in the worker (5xx, timeouts)",
            ATTEMPTS,
            f"{attempts} AND {_one_of('response_code', SERVER_ERROR_CODES)}",
            rate,
            operations.alert_failure_ratio,
            "ratio",
            "Attempts fail with a server-side code (5xx, no answer before the dispatch "
            "deadline): read the worker's logs for the failing task type.",
            denominator_filter=attempts,
        ),
        Signal(
            "failure_ratio_4xx",
            "attempts refused (4xx)",
            ATTEMPTS,
            f"{attempts} AND {_one_of('response_code', CLIENT_ERROR_CODES)}",
            rate,
            operations.alert_failure_ratio,
            "ratio",
            "Attempts are refused with a client-side code (404: the URL or route; 429: "
            "the worker sheds load; 401/403: see the auth-drift alert).",
            denominator_filter=attempts,
        ),
        Signal(
            "auth_drift",
            "attempts refused 401/403",
            ATTEMPTS,
            f"{attempts} AND {_one_of('response_code', AUTH_FAILURE_CODES)}",
            count,
            0,
            "count",
            "Cloud Run refused the task's token: 401 = the OIDC audience or token is wrong "
            "(custom_audience, the queue's http_target); 403 = the invoker lost "
            "roles/run.invoker on the service. No task of this queue can succeed until fixed.",
        ),
        Signal(
            "dropped_tasks",
            "tasks dropped after their last attempt",
            LOG_METRICS[DROPPED_TASKS].type,
            _select(LOG_METRICS[DROPPED_TASKS].type, CLOUD_TASKS_QUEUE, queue_id=queue_id),
            count,
            0,
            "count",
            "Cloud Tasks deleted tasks whose retries were exhausted: their bodies are gone "
            "unless the worker recorded them. Find them in the queue's task_operations_log.",
        ),
        Signal(
            "dead_letters",
            "dead letters written",
            LOG_METRICS[DEAD_LETTERS].type,
            f'metric.type="{LOG_METRICS[DEAD_LETTERS].type}" AND '
            f'resource.type="{CLOUD_RUN_REVISION}" AND metric.label.queue_name="{queue_id}"',
            Aggregation("ALIGN_DELTA", "REDUCE_SUM", ("metric.label.queue_name",)),
            0,
            "count",
            "The worker recorded tasks that can never succeed (bad payload, unknown type, "
            "PermanentError): each entry holds the whole task, ready to replay.",
        ),
    ]


RUN = "run.googleapis.com/"
BY_SERVICE = ("resource.label.service_name",)


def worker_signals(
    service_name: str, operations: OperationsConfig, dispatch_deadline_s: int
) -> list[Signal]:
    """The worker's signals."""
    requests = _select(f"{RUN}request_count", CLOUD_RUN_REVISION, service_name=service_name)
    latency_s = latency_threshold_s(operations, dispatch_deadline_s)
    return [
        Signal(
            "worker_5xx_ratio",
            "worker answers 5xx",
            f"{RUN}request_count",
            f'{requests} AND metric.label.response_code_class="5xx"',
            Aggregation("ALIGN_RATE", "REDUCE_SUM", BY_SERVICE),
            operations.alert_worker_5xx_ratio,
            "ratio",
            "The worker answers 5xx (TransientError, a failing dependency, a crash, or "
            "Cloud Run itself): read its ERROR logs.",
            denominator_filter=requests,
        ),
        Signal(
            "worker_latency",
            "worker latency (p99)",
            f"{RUN}request_latencies",
            _select(f"{RUN}request_latencies", CLOUD_RUN_REVISION, service_name=service_name),
            Aggregation("ALIGN_PERCENTILE_99", "REDUCE_MAX", BY_SERVICE),
            latency_s * 1000,
            "ms",
            f"Requests take more than {latency_s:g}s at the 99th percentile: attempts near "
            "the dispatch deadline are cut and retried. A slow dependency, or too little CPU.",
        ),
    ]


# --- the dashboard -----------------------------------------------------------------------

COLUMNS: Final = 48  # a mosaic dashboard is 48 columns wide
TILE_WIDTH: Final = 16
TILE_HEIGHT: Final = 12


def _chart(signal: Signal) -> dict[str, Any]:
    query: dict[str, Any] = {"filter": signal.filter, "aggregation": signal.aggregation.to_json()}
    if signal.is_ratio:
        query = {
            "timeSeriesFilterRatio": {
                "numerator": query,
                "denominator": {
                    "filter": signal.denominator_filter,
                    "aggregation": signal.aggregation.to_json(),
                },
            }
        }
    else:
        query = {"timeSeriesFilter": query}
    return {
        "title": signal.title,
        "xyChart": {
            "dataSets": [{"timeSeriesQuery": query, "plotType": "LINE"}],
            "thresholds": [
                {"value": signal.threshold, "label": f"alert above {signal.threshold:g}"}
            ],
            "yAxis": {"label": signal.unit, "scale": "LINEAR"},
        },
    }


def attempts_by_code_chart(queue_id: str) -> dict[str, Any]:
    """Every attempt of a queue per second, one line per response code (the breakdown the
    failure-ratio alerts sum over)."""
    return {
        "title": "attempts by response code",
        "xyChart": {
            "dataSets": [
                {
                    "timeSeriesQuery": {
                        "timeSeriesFilter": {
                            "filter": _select(ATTEMPTS, CLOUD_TASKS_QUEUE, queue_id=queue_id),
                            "aggregation": Aggregation(
                                "ALIGN_RATE",
                                "REDUCE_SUM",
                                (*BY_QUEUE, "metric.label.response_code"),
                            ).to_json(),
                        }
                    },
                    "plotType": "STACKED_BAR",
                }
            ],
            "yAxis": {"label": "attempts/s", "scale": "LINEAR"},
        },
    }


def dashboard(
    title: str,
    queues: Mapping[str, tuple[str, Sequence[Signal]]],
    worker: Sequence[Signal],
) -> dict[str, Any]:
    """The stack's dashboard: a section per queue (key -> (queue id, its signals)), then
    the worker's."""
    tiles: list[dict[str, Any]] = []
    row = 0

    def section(heading: str, widgets: Sequence[dict[str, Any]]) -> None:
        nonlocal row
        tiles.append(
            {
                "xPos": 0,
                "yPos": row,
                "width": COLUMNS,
                "height": 2,
                "widget": {"title": heading, "sectionHeader": {"subtitle": ""}},
            }
        )
        row += 2
        for index, widget in enumerate(widgets):
            tiles.append(
                {
                    "xPos": (index * TILE_WIDTH) % COLUMNS,
                    "yPos": row + (index * TILE_WIDTH) // COLUMNS * TILE_HEIGHT,
                    "width": TILE_WIDTH,
                    "height": TILE_HEIGHT,
                    "widget": widget,
                }
            )
        row += -(-len(widgets) * TILE_WIDTH // COLUMNS) * TILE_HEIGHT

    for key, (queue_id, signals) in queues.items():
        section(
            f"queue {key} ({queue_id})",
            [*(_chart(s) for s in signals), attempts_by_code_chart(queue_id)],
        )
    section("worker", [_chart(s) for s in worker])
    return {"displayName": title, "mosaicLayout": {"columns": COLUMNS, "tiles": tiles}}


def dashboard_text(document: Mapping[str, Any]) -> str:
    """The dashboard JSON as the provider takes it (stable key order)."""
    return json.dumps(document, sort_keys=True)
