"""The Cloud Monitoring metric types and labels Google publishes, that alerts may use.

A copy of the Cloud Tasks (`cloudtasks`) and Cloud Run (`run`) sections of
Google's metric list, https://cloud.google.com/monitoring/api/metrics_gcp
(metric types, kinds, value types, units and labels), and of the monitored
resource types they are written against
(https://cloud.google.com/monitoring/api/resources); only the metrics and labels
the pipeline may watch, each exactly as Google spells it. Read on 2026-12-04
through the project's documentation search: the list page itself was not in the
search corpus that day, so each entry was cross-checked against the Cloud Tasks
monitoring page (https://cloud.google.com/tasks/docs/monitor), the metric
lists integrations copy from Google's (Datadog, AppDynamics, Observe), and
/work/shared/FACTS.md; the descriptions quoted below are Google's. Check the
page again when adding a metric.

A metric type or label misspelt in an alert policy is not an error anywhere:
the policy is accepted and never fires. `tests/operations` therefore checks
every filter of every alert and dashboard widget against this module, and the
log-based metrics the stack itself declares (`components.monitoring`) are the
only other metric types allowed.

Standard library only: the program, the plan and the tests read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

METRICS_SOURCE_URL: Final = "https://cloud.google.com/monitoring/api/metrics_gcp"
RESOURCES_SOURCE_URL: Final = "https://cloud.google.com/monitoring/api/resources"
READ_ON: Final = "2026-12-04"

CLOUD_TASKS_QUEUE: Final = "cloud_tasks_queue"
CLOUD_RUN_REVISION: Final = "cloud_run_revision"

RESOURCE_LABELS: Final[dict[str, frozenset[str]]] = {
    # cloud_tasks_queue: "A Cloud Tasks queue."
    CLOUD_TASKS_QUEUE: frozenset({"project_id", "queue_id", "target_type", "location"}),
    # cloud_run_revision: "A revision in Cloud Run (fully managed)."
    CLOUD_RUN_REVISION: frozenset(
        {"project_id", "service_name", "revision_name", "location", "configuration_name"}
    ),
}
"""Monitored resource type -> its labels (`resource.label.<name>` in a filter)."""


@dataclass(frozen=True)
class MetricDescriptor:
    """One row of Google's metric list."""

    type: str
    resource_type: str
    kind: str  # GAUGE, DELTA, CUMULATIVE
    value_type: str  # INT64, DOUBLE, DISTRIBUTION
    unit: str
    labels: frozenset[str]  # `metric.label.<name>` in a filter


def _metric(
    type_: str, resource: str, kind: str, value: str, unit: str, *labels: str
) -> tuple[str, MetricDescriptor]:
    return type_, MetricDescriptor(type_, resource, kind, value, unit, frozenset(labels))


PUBLISHED_METRICS: Final[dict[str, MetricDescriptor]] = dict(
    (
        # --- cloudtasks (resource cloud_tasks_queue) ---------------------------------------
        # "Count of Cloud Tasks API calls."
        _metric(
            "cloudtasks.googleapis.com/api/request_count",
            CLOUD_TASKS_QUEUE,
            "DELTA",
            "INT64",
            "1",
            "api_method",
            "response_code",
        ),
        # "The number of tasks in the queue."
        _metric("cloudtasks.googleapis.com/queue/depth", CLOUD_TASKS_QUEUE, "GAUGE", "INT64", "1"),
        # "Count of task attempts broken down by response code." The code is the canonical
        # one in lower case ("ok", "unauthenticated", "permission_denied", ...).
        _metric(
            "cloudtasks.googleapis.com/queue/task_attempt_count",
            CLOUD_TASKS_QUEUE,
            "DELTA",
            "INT64",
            "1",
            "response_code",
        ),
        # "Delay between each scheduled attempt time and actual attempt time."
        _metric(
            "cloudtasks.googleapis.com/queue/task_attempt_delays",
            CLOUD_TASKS_QUEUE,
            "DELTA",
            "DISTRIBUTION",
            "ms",
            "response_code",
        ),
        # --- run (resource cloud_run_revision) ----------------------------------------------
        # "Number of requests reaching the revision."
        _metric(
            "run.googleapis.com/request_count",
            CLOUD_RUN_REVISION,
            "DELTA",
            "INT64",
            "1",
            "response_code",
            "response_code_class",
            "route_type",
        ),
        # "Distribution of request latency in milliseconds reaching the revision."
        _metric(
            "run.googleapis.com/request_latencies",
            CLOUD_RUN_REVISION,
            "DELTA",
            "DISTRIBUTION",
            "ms",
            "response_code",
            "response_code_class",
            "route_type",
        ),
        # "Number of container instances that exist, broken down by state."
        _metric(
            "run.googleapis.com/container/instance_count",
            CLOUD_RUN_REVISION,
            "GAUGE",
            "INT64",
            "1",
            "state",
        ),
        # "Billable time aggregated across all container instances."
        _metric(
            "run.googleapis.com/container/billable_instance_time",
            CLOUD_RUN_REVISION,
            "DELTA",
            "DOUBLE",
            "s{idle}",
        ),
    )
)
"""Metric type -> what Google publishes about it."""

LOG_BASED_METRIC_PREFIX: Final = "logging.googleapis.com/user/"
"""A user-defined log-based metric NAME is the metric type `logging.googleapis.com/user/NAME`
(https://cloud.google.com/logging/docs/logs-based-metrics)."""

# Cloud Tasks reports an attempt's HTTP status as the canonical code Google maps it to
# (google.rpc.Code, https://cloud.google.com/apis/design/errors#handling_errors).
SERVER_ERROR_CODES: Final = (
    "unavailable",  # 503
    "internal",  # 500
    "unknown",  # other 5xx, and no response
    "deadline_exceeded",  # 504, or the dispatch deadline passed
    "unimplemented",  # 501
    "data_loss",
)
"""`response_code` values of a 5xx (or missing) answer: the worker or the platform failed."""
CLIENT_ERROR_CODES: Final = (
    "invalid_argument",  # 400
    "failed_precondition",
    "out_of_range",
    "unauthenticated",  # 401
    "permission_denied",  # 403
    "not_found",  # 404
    "aborted",  # 409
    "already_exists",
    "resource_exhausted",  # 429
    "cancelled",  # 499
)
"""`response_code` values of a 4xx answer: the task or its credentials were refused."""
AUTH_FAILURE_CODES: Final = ("unauthenticated", "permission_denied")
"""401 (wrong audience, no ID token) and 403 (the run.invoker binding is missing)."""
SUCCESS_CODE: Final = "ok"
