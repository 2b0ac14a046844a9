"""Operations: alert policies, log-based metrics, notification channels and the dashboard.

For every queue of the stack and for the worker it declares one
`gcp.monitoring.AlertPolicy` per signal of `components.signals` (queue depth,
attempts running late, failure ratio by response class, 401/403 attempts,
dropped tasks, dead letters; the worker's 5xx ratio and p99 latency), the two
log-based metrics (`gcp.logging.Metric`) those signals need where Google
publishes no metric, an email `gcp.monitoring.NotificationChannel` per
configured address (plus the existing channels configured by id), and one
`gcp.monitoring.Dashboard` drawn from the same signals.

It takes `queues`: queue key -> (the queue's id Output, that queue's
`QueueConfig`), built in one place by the pipeline, so every queue the stack
declares is watched. The expected volume of `OperationsConfig` is recorded as
this component's own inputs (`expectedVolume`, and each queue's share), so the
plan, and the cost and capacity preview that reads it (`plan.cost`), carries it.

It deliberately grants nothing: alerting needs no role on the runtime account
(the deployer's monitoring and logging roles are bootstrap's, bootstrap/deployer.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

import pulumi
import pulumi_gcp as gcp

from components.config import GcpConfig, OperationsConfig, QueueConfig
from components.signals import (
    ALERT_WINDOW_S,
    LOG_METRICS,
    Signal,
    dashboard,
    dashboard_text,
    queue_signals,
    worker_signals,
)
from contract.resources import OPERATIONS_TYPE

SEVERITY: Final = {
    "auth_drift": "CRITICAL",
    "dropped_tasks": "ERROR",
    "failure_ratio_5xx": "ERROR",
    "worker_5xx_ratio": "ERROR",
}
"""Alert severity by signal key; WARNING otherwise."""
AUTO_CLOSE: Final = "1800s"


def queue_short_id(path: str) -> str:
    """`projects/P/locations/L/queues/Q` -> `Q`, the `queue_id` label Monitoring uses."""
    return path.rstrip("/").rsplit("/", 1)[-1]


def _condition(signal: Signal) -> gcp.monitoring.AlertPolicyConditionArgs:
    aggregation = signal.aggregation
    period, reducer = f"{ALERT_WINDOW_S}s", aggregation.reducer
    group_by = list(aggregation.group_by) or None
    aggregations = [
        gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
            alignment_period=period,
            per_series_aligner=aggregation.aligner,
            cross_series_reducer=reducer,
            group_by_fields=group_by,
        )
    ]
    # A ratio's denominator is aggregated the same way (the provider's own Args type).
    denominator = [
        gcp.monitoring.AlertPolicyConditionConditionThresholdDenominatorAggregationArgs(
            alignment_period=period,
            per_series_aligner=aggregation.aligner,
            cross_series_reducer=reducer,
            group_by_fields=group_by,
        )
    ]
    # A count fires on the first occurrence; a level must hold for the whole window.
    duration = "0s" if signal.unit == "count" else f"{ALERT_WINDOW_S}s"
    return gcp.monitoring.AlertPolicyConditionArgs(
        display_name=f"{signal.title} > {signal.threshold:g} {signal.unit}",
        condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
            filter=signal.filter,
            comparison="COMPARISON_GT",
            threshold_value=signal.threshold,
            duration=duration,
            aggregations=aggregations,
            denominator_filter=signal.denominator_filter,
            denominator_aggregations=denominator if signal.is_ratio else None,
            trigger=gcp.monitoring.AlertPolicyConditionConditionThresholdTriggerArgs(count=1),
        ),
    )


def _nth_signal(
    queue: QueueConfig, config: OperationsConfig, index: int
) -> Callable[[str], Signal]:
    """The `index`-th signal of a queue, once its id is known."""

    def signal(queue_id: str) -> Signal:
        return queue_signals(queue_id, queue, config)[index]

    return signal


class Operations(pulumi.ComponentResource):
    """Alerts, log-based metrics, channels and the dashboard of one stack."""

    channels: list[pulumi.Output[str]]
    log_metrics: dict[str, gcp.logging.Metric]
    policies: dict[str, gcp.monitoring.AlertPolicy]
    """Alert policies by `<queue key>/<signal key>` or `worker/<signal key>`."""
    dashboard: gcp.monitoring.Dashboard

    def __init__(
        self,
        name: str,
        config: OperationsConfig,
        *,
        gcp_config: GcpConfig,
        queues: Mapping[str, tuple[pulumi.Input[str], QueueConfig]],
        service_name: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`queues`: queue key -> (queue id, i.e. its full path, and its config);
        `service_name`: the worker's Cloud Run service."""
        share = config.expected_tasks_per_day / max(1, len(queues))
        super().__init__(
            OPERATIONS_TYPE,
            name,
            {
                # Read back by plan.cost: the volume this stack was priced for.
                "expectedVolume": {
                    "tasksPerDay": config.expected_tasks_per_day,
                    "handlerSeconds": config.expected_handler_seconds,
                    "payloadBytes": config.expected_payload_bytes,
                },
                "queues": {
                    key: {"queue": queue_id, "tasksPerDay": share}
                    for key, (queue_id, _) in queues.items()
                },
            },
            opts,
        )
        project = gcp_config.project
        child = pulumi.ResourceOptions(parent=self)

        emails = [
            gcp.monitoring.NotificationChannel(
                f"{name}-email-{index}",
                project=project,
                type="email",
                display_name=f"tasks pipeline alerts: {address}",
                labels={"email_address": address},
                opts=child,
            )
            for index, address in enumerate(config.alert_emails)
        ]
        self.channels = [c.name for c in emails] + [
            pulumi.Output.from_input(c) for c in config.alert_channels
        ]

        self.log_metrics = {
            metric.name: gcp.logging.Metric(
                f"{name}-{metric.name.rsplit('/', 1)[-1].replace('_', '-')}",
                project=project,
                name=metric.name,
                description=metric.description,
                filter=metric.log_filter(service_name),
                metric_descriptor=gcp.logging.MetricMetricDescriptorArgs(
                    metric_kind="DELTA",
                    value_type="INT64",
                    unit="1",
                    labels=[
                        gcp.logging.MetricMetricDescriptorLabelArgs(key=label, value_type="STRING")
                        for label in metric.labels
                    ]
                    or None,
                ),
                label_extractors=dict(metric.labels) or None,
                opts=child,
            )
            for metric in LOG_METRICS.values()
        }

        short_ids = {
            key: pulumi.Output.from_input(queue_id).apply(queue_short_id)
            for key, (queue_id, _) in queues.items()
        }
        deadline = max((q.dispatch_deadline for _, q in queues.values()), default=600)
        self.policies = {}
        for key, (_, queue) in queues.items():
            for index, probe in enumerate(queue_signals("QUEUE", queue, config)):
                self._policy(
                    f"{name}-{key}-{probe.key.replace('_', '-')}",
                    f"{key}/{probe.key}",
                    short_ids[key].apply(_nth_signal(queue, config, index)),
                    f"queue {key}",
                    probe,
                    project,
                )
        for signal in worker_signals(service_name, config, deadline):
            self._policy(
                f"{name}-{signal.key.replace('_', '-')}",
                f"worker/{signal.key}",
                pulumi.Output.from_input(signal),
                f"worker {service_name}",
                signal,
                project,
            )

        def draw(ids: dict[str, str]) -> str:
            return dashboard_text(
                dashboard(
                    f"tasks pipeline ({project})",
                    {
                        key: (ids[key], queue_signals(ids[key], q, config))
                        for key, (_, q) in queues.items()
                    },
                    worker_signals(service_name, config, deadline),
                )
            )

        self.dashboard = gcp.monitoring.Dashboard(
            f"{name}-dashboard",
            project=project,
            dashboard_json=pulumi.Output.all(**short_ids).apply(draw),
            opts=child,
        )
        self.register_outputs({"channels": self.channels})

    def _policy(
        self,
        resource_name: str,
        key: str,
        signal: pulumi.Output[Signal],
        subject: str,
        probe: Signal,
        project: str,
    ) -> None:
        """One alert policy; `probe` is the signal with a placeholder queue id, for the
        parts known before the queue exists (names, severity, which log metric it reads)."""
        needs = [
            resource
            for metric_name, resource in self.log_metrics.items()
            if LOG_METRICS[metric_name].type == probe.metric_type
        ]
        self.policies[key] = gcp.monitoring.AlertPolicy(
            resource_name,
            project=project,
            display_name=f"tasks pipeline, {subject}: {probe.title}",
            combiner="OR",
            conditions=[signal.apply(_condition)],
            severity=SEVERITY.get(probe.key, "WARNING"),
            notification_channels=self.channels,
            documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                mime_type="text/markdown",
                subject=f"tasks pipeline, {subject}: {probe.title}",
                content=signal.apply(lambda s: f"{s.why}\n\nThreshold: {s.threshold:g} {s.unit}."),
            ),
            alert_strategy=gcp.monitoring.AlertPolicyAlertStrategyArgs(auto_close=AUTO_CLOSE),
            user_labels={"signal": probe.key.replace("_", "-")},
            opts=pulumi.ResourceOptions(parent=self, depends_on=needs),
        )
