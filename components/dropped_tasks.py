"""The log-based metric of tasks Cloud Tasks dropped without the worker recording them.

The worker records every task it sees fail for the last time (`service.final_attempt`),
but a task whose last attempt never reaches it (the worker down, a 401/403 from a
wiring mistake, DNS) is deleted with no body anywhere. Cloud Tasks logs every
attempt of a queue whose `stackdriver_logging_config` samples it (stack config
`log_sampling_ratio`, 1 in every committed stack): `dropped_tasks_metric` counts the
attempts that failed and were not scheduled again, per queue (label `queue_id`), as
the user-defined metric `logging.googleapis.com/user/<service>/dropped_tasks`. Alert
on it being above zero. A task the worker dead-lettered was answered 2xx, so it is
not counted: the metric is exactly what is lost.

The filter relies on Cloud Tasks' attempt log (`cloudtasks.googleapis.com/
task_operations_log`, `jsonPayload.attemptResponseLog`): a failed attempt that will be
retried carries `retryTime`, the last one does not. Only a real project can confirm
the field names (docs/deploying.md); the plan pins the filter.

This module deliberately creates no alert policy (where alerts go is each team's
choice) and grants nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import pulumi
import pulumi_gcp as gcp

from components.config import GcpConfig

METRIC_SUFFIX: Final = "dropped_tasks"
QUEUE_LABEL: Final = "queue_id"
TASK_OPERATIONS_LOG: Final = "cloudtasks.googleapis.com%2Ftask_operations_log"


def dropped_tasks_filter(project: str, queue_ids: Sequence[str]) -> str:
    """The Cloud Logging filter of the last, failed attempts of the stack's queues."""
    queues = " OR ".join(f'"{queue}"' for queue in queue_ids)
    return (
        'resource.type="cloud_tasks_queue" '
        f'AND logName="projects/{project}/logs/{TASK_OPERATIONS_LOG}" '
        f"AND resource.labels.queue_id=({queues}) "
        "AND jsonPayload.attemptResponseLog.status:* "
        'AND jsonPayload.attemptResponseLog.status!="OK" '
        "AND NOT jsonPayload.attemptResponseLog.retryTime:*"
    )


def dropped_tasks_metric(
    name: str,
    *,
    gcp_config: GcpConfig,
    service_name: str,
    queue_ids: Sequence[pulumi.Input[str]],
    opts: pulumi.ResourceOptions,
) -> gcp.logging.Metric:
    """The counter, one point per dropped task, labelled with its queue id."""
    project = gcp_config.project
    return gcp.logging.Metric(
        f"{name}-dropped-tasks",
        name=f"{service_name}/{METRIC_SUFFIX}",
        project=project,
        description=(
            "Tasks whose last attempt failed and which Cloud Tasks deleted without the "
            "worker recording them (worker unreachable, 401/403, DNS): lost tasks."
        ),
        filter=pulumi.Output.all(*queue_ids).apply(
            lambda ids: dropped_tasks_filter(project, [str(i) for i in ids])
        ),
        metric_descriptor=gcp.logging.MetricMetricDescriptorArgs(
            metric_kind="DELTA",
            value_type="INT64",
            unit="1",
            display_name="Dropped tasks",
            labels=[
                gcp.logging.MetricMetricDescriptorLabelArgs(
                    key=QUEUE_LABEL,
                    value_type="STRING",
                    description="The queue id (last segment of the queue's path).",
                )
            ],
        ),
        label_extractors={QUEUE_LABEL: "EXTRACT(resource.labels.queue_id)"},
        opts=opts,
    )
