"""Every stack declares, for every queue and for the worker, the alerts, log-based metrics,
dashboard and channels of components.monitoring, with metric types Google publishes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.config import OperationsConfig, QueueConfig
from components.monitoring import queue_short_id
from components.signals import (
    DEAD_LETTERS,
    LOG_METRICS,
    dashboard,
    latency_threshold_s,
    oldest_task_age_threshold_s,
    queue_signals,
    worker_signals,
)
from contract.gcp_metrics import CLOUD_RUN_REVISION, CLOUD_TASKS_QUEUE
from contract.resources import (
    ALERT_POLICY_TYPE,
    DASHBOARD_TYPE,
    IAM_MEMBER_TYPES,
    LOG_METRIC_TYPE,
    NOTIFICATION_CHANNEL_TYPE,
    OPERATIONS_TYPE,
)
from plan.engine import evaluate_config
from plan.model import Plan, PlannedResource
from plan.stack_config import load_stack_config
from tests.operations.metric_check import filter_problems, known_metrics

QUEUE_SIGNALS = {
    "queue-depth",
    "oldest-task-age",
    "failure-ratio-5xx",
    "failure-ratio-4xx",
    "auth-drift",
    "dropped-tasks",
    "dead-letters",
}
WORKER_SIGNALS = {"worker-5xx-ratio", "worker-latency"}


def policies(plan: Plan) -> list[PlannedResource]:
    return plan.of_type(ALERT_POLICY_TYPE)


def conditions(policy: PlannedResource) -> list[dict[str, Any]]:
    return [c["conditionThreshold"] for c in policy.inputs["conditions"]]


def watched_queues(plan: Plan) -> dict[str, str]:
    """Queue key -> queue path, as the Operations component recorded them."""
    recorded = plan.one(OPERATIONS_TYPE).inputs["queues"]
    return {key: value["queue"] for key, value in recorded.items()}


def plan_log_metrics(plan: Plan) -> dict[str, tuple[str, list[str]]]:
    declared = {}
    for metric in plan.of_type(LOG_METRIC_TYPE):
        resource = metric.inputs["filter"].split('resource.type="', 1)[1].split('"', 1)[0]
        declared[metric.inputs["name"]] = (resource, list(metric.inputs.get("labelExtractors", {})))
    return declared


def every_filter(plan: Plan) -> list[tuple[str, list[str]]]:
    """(filter, group-by fields) of every alert condition and every dashboard chart."""
    found = []
    for policy in policies(plan):
        for condition in conditions(policy):
            fields = [f for a in condition["aggregations"] for f in a.get("groupByFields", [])]
            found.append((condition["filter"], fields))
            if "denominatorFilter" in condition:
                found.append((condition["denominatorFilter"], fields))
    document = json.loads(plan.one(DASHBOARD_TYPE).inputs["dashboardJson"])
    for tile in document["mosaicLayout"]["tiles"]:
        for data_set in tile["widget"].get("xyChart", {}).get("dataSets", []):
            query = data_set["timeSeriesQuery"]
            parts = (
                [query["timeSeriesFilter"]]
                if "timeSeriesFilter" in query
                else list(query["timeSeriesFilterRatio"].values())
            )
            found += [(p["filter"], p["aggregation"].get("groupByFields", [])) for p in parts]
    return found


class TestEveryQueueAndTheWorkerAreWatched:
    def test_the_component_watches_every_queue_of_the_plan(self, plan: Plan) -> None:
        assert sorted(watched_queues(plan).values()) == sorted(q.path for q in plan.queues())

    def test_every_queue_has_every_alert_on_its_own_queue_id(self, plan: Plan) -> None:
        for key, path in watched_queues(plan).items():
            queue_id = queue_short_id(path)
            mine = [p for p in policies(plan) if p.name.startswith(f"tasks-operations-{key}-")]
            assert {p.inputs["userLabels"]["signal"] for p in mine} == QUEUE_SIGNALS
            for policy in mine:
                for condition in conditions(policy):
                    assert f'"{queue_id}"' in condition["filter"], policy.name

    def test_the_worker_has_its_alerts_on_its_service(self, plan: Plan) -> None:
        service = plan.services()[0].name
        mine = [p for p in policies(plan) if p.inputs["userLabels"]["signal"] in WORKER_SIGNALS]
        assert {p.inputs["userLabels"]["signal"] for p in mine} == WORKER_SIGNALS
        for policy in mine:
            [condition] = conditions(policy)
            assert f'resource.label.service_name="{service}"' in condition["filter"]
            assert f'resource.type="{CLOUD_RUN_REVISION}"' in condition["filter"]

    def test_the_dashboard_has_a_section_per_queue_and_the_worker(self, plan: Plan) -> None:
        document = json.loads(plan.one(DASHBOARD_TYPE).inputs["dashboardJson"])
        titles = [t["widget"]["title"] for t in document["mosaicLayout"]["tiles"]]
        for key, path in watched_queues(plan).items():
            assert f"queue {key} ({queue_short_id(path)})" in titles
        assert "worker" in titles
        # Every alert's signal is charted, with the alert's threshold drawn on it.
        thresholds = {
            (t["widget"]["title"], t["widget"]["xyChart"]["thresholds"][0]["value"])
            for t in document["mosaicLayout"]["tiles"]
            if t["widget"].get("xyChart", {}).get("thresholds")
        }
        for policy in policies(plan):
            title = policy.inputs["displayName"].split(": ", 1)[1]
            [condition] = conditions(policy)
            assert (title, condition["thresholdValue"]) in thresholds, title

    def test_the_log_based_metrics_count_what_no_builtin_metric_does(self, plan: Plan) -> None:
        metrics = {m.inputs["name"]: m.inputs for m in plan.of_type(LOG_METRIC_TYPE)}
        assert set(metrics) == {"tasks_pipeline/dead_letters", "tasks_pipeline/dropped_tasks"}
        dead = metrics["tasks_pipeline/dead_letters"]
        service = plan.services()[0].name
        assert f'resource.labels.service_name="{service}"' in dead["filter"]
        # The field service.deadletter writes on every dead letter.
        assert "jsonPayload.dead_letter.reason:*" in dead["filter"]
        assert dead["labelExtractors"] == {
            "queue_name": "EXTRACT(jsonPayload.dead_letter.queue_name)"
        }
        dropped = metrics["tasks_pipeline/dropped_tasks"]
        assert f'resource.type="{CLOUD_TASKS_QUEUE}"' in dropped["filter"]
        assert "NOT jsonPayload.attemptResponseLog.retryTime:*" in dropped["filter"]
        for metric in metrics.values():
            assert metric["metricDescriptor"]["metricKind"] == "DELTA"
        # An alert on a log-based metric waits for the metric to exist.
        by_urn = {m.urn for m in plan.of_type(LOG_METRIC_TYPE)}
        for policy in policies(plan):
            if "logging.googleapis.com/user/" in conditions(policy)[0]["filter"]:
                assert set(policy.dependencies) & by_urn, policy.name


class TestPublishedMetrics:
    def test_every_filter_uses_published_metric_types_and_labels(self, plan: Plan) -> None:
        known = known_metrics(plan_log_metrics(plan))
        filters = every_filter(plan)
        assert len(filters) > 20
        for text, group_by in filters:
            assert filter_problems(text, known, group_by) == [], text

    @pytest.mark.parametrize(
        ("typo", "problem"),
        [
            ("queue/depth", "queue/deptth"),
            ("response_code=", "response_codes="),
            ("cloud_tasks_queue", "cloud_task_queue"),
            (
                "queue_id=",
                "queue=",
            ),
            (" AND ", " and "),
        ],
    )
    def test_a_typo_is_caught(self, all_plans: dict[str, Plan], typo: str, problem: str) -> None:
        plan = all_plans["dev"]
        known = known_metrics(plan_log_metrics(plan))
        text, group_by = next(f for f in every_filter(plan) if typo in f[0])
        assert filter_problems(text.replace(typo, problem), known, group_by) != []

    def test_the_log_metric_labels_are_the_ones_alerts_filter_on(self) -> None:
        signals = queue_signals("q", QueueConfig(), OperationsConfig())
        [dead] = [s for s in signals if s.metric_type == LOG_METRICS[DEAD_LETTERS].type]
        assert set(LOG_METRICS[DEAD_LETTERS].labels) == {"queue_name"}
        assert 'metric.label.queue_name="q"' in dead.filter


class TestChannels:
    def test_each_email_is_a_channel_every_alert_notifies(self, plan: Plan) -> None:
        config = load_stack_config(plan.stack)
        emails = json.loads(config.get("cloud-tasks-pipeline:alert_emails", "[]"))
        channels = plan.of_type(NOTIFICATION_CHANNEL_TYPE)
        assert sorted(c.inputs["labels"]["email_address"] for c in channels) == sorted(emails)
        assert all(c.inputs["type"] == "email" for c in channels)
        names = sorted(c.outputs["name"] for c in channels)
        for policy in policies(plan):
            assert sorted(policy.inputs["notificationChannels"]) == names

    def test_existing_channels_are_attached_as_they_are(self) -> None:
        channel = "projects/my-tasks-dev/notificationChannels/1234567890"
        config = {**load_stack_config("dev")}
        config["cloud-tasks-pipeline:alert_channels"] = json.dumps([channel])
        config["cloud-tasks-pipeline:alert_emails"] = "[]"
        plan = evaluate_config("dev", config)
        assert plan.of_type(NOTIFICATION_CHANNEL_TYPE) == []
        assert all(p.inputs["notificationChannels"] == [channel] for p in policies(plan))


class TestLeastPrivilege:
    def test_operations_grants_nothing_to_anyone(self, plan: Plan) -> None:
        operations = plan.one(OPERATIONS_TYPE)
        inside = {r.urn for r in plan.resources if operations in plan.ancestors(r)}
        grants = [r for r in plan.resources if r.type in IAM_MEMBER_TYPES]
        assert not [g for g in grants if g.urn in inside]

    def test_the_runtime_account_gets_nothing_from_operations(self, plan: Plan) -> None:
        # Its one grant is creating dead letters in their bucket (components.dead_letters).
        runtime = f"serviceAccount:{plan.services()[0].runtime_account}"
        grants = {
            (r.type, r.inputs["role"])
            for r in plan.resources
            if r.type in IAM_MEMBER_TYPES and r.inputs.get("member") == runtime
        }
        assert grants == {
            ("gcp:storage/bucketIAMMember:BucketIAMMember", "roles/storage.objectCreator")
        }


class TestThresholds:
    def test_the_oldest_task_age_follows_the_queue_unless_set(self) -> None:
        quick = QueueConfig(max_backoff=30)
        slow = QueueConfig(max_backoff=3600)
        assert oldest_task_age_threshold_s(quick, OperationsConfig()) == 300
        assert oldest_task_age_threshold_s(slow, OperationsConfig()) == 3600
        assert oldest_task_age_threshold_s(slow, OperationsConfig(alert_oldest_task_age=120)) == 120

    def test_the_latency_follows_the_dispatch_deadline_unless_set(self) -> None:
        assert latency_threshold_s(OperationsConfig(), 900) == 450
        assert latency_threshold_s(OperationsConfig(alert_latency=5), 900) == 5

    def test_the_plan_carries_the_derived_and_configured_thresholds(self) -> None:
        config = {**load_stack_config("prod")}
        plan = evaluate_config("prod", config)
        by_signal = {p.inputs["userLabels"]["signal"]: conditions(p)[0] for p in policies(plan)}
        assert by_signal["oldest-task-age"]["thresholdValue"] == 600_000  # max_backoff 600s
        assert by_signal["worker-latency"]["thresholdValue"] == 450_000  # deadline 900s / 2
        config["cloud-tasks-pipeline:alert_queue_depth"] = "5000"
        config["cloud-tasks-pipeline:alert_failure_ratio"] = "0.25"
        plan = evaluate_config("prod", config)
        by_signal = {p.inputs["userLabels"]["signal"]: conditions(p)[0] for p in policies(plan)}
        assert by_signal["queue-depth"]["thresholdValue"] == 5000
        assert by_signal["failure-ratio-5xx"]["thresholdValue"] == 0.25
        assert by_signal["failure-ratio-5xx"]["denominatorFilter"].endswith('queue_id="tasks-prod"')


def test_several_queues_get_a_section_each() -> None:
    operations = OperationsConfig()
    document = dashboard(
        "t",
        {
            key: (queue_id, queue_signals(queue_id, QueueConfig(), operations))
            for key, queue_id in (("default", "q-default"), ("bulk", "q-bulk"))
        },
        worker_signals("tasks-worker", operations, 600),
    )
    tiles = document["mosaicLayout"]["tiles"]
    headers = [t["widget"]["title"] for t in tiles if "sectionHeader" in t["widget"]]
    assert headers == ["queue default (q-default)", "queue bulk (q-bulk)", "worker"]
    # Tiles never overlap: each sits in its own cell of the 48-column grid.
    cells = [(t["xPos"], t["yPos"]) for t in tiles]
    assert len(cells) == len(set(cells))
    assert all(t["xPos"] + t["width"] <= 48 for t in tiles)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("alert_emails", '["oncall"]', "is not an email address"),
        ("alert_emails", '["a@example.com", "a@example.com"]', "listed twice"),
        ("alert_channels", '["1234"]', "is not a notification channel id"),
        ("alert_failure_ratio", "0", "greater than 0"),
        ("alert_worker_5xx_ratio", "1.5", "less than or equal to 1"),
        ("alert_queue_depth", "0", "greater than or equal to 1"),
        ("alert_oldest_task_age", "ten minutes", "like 30s, 5m or 1h"),
        ("expected_payload_bytes", "2000000", "less than or equal to 1048576"),
        ("expected_handler_seconds", "0", "greater than 0"),
    ],
)
def test_a_bad_operations_value_stops_the_plan_naming_the_key(
    key: str, value: str, words: str
) -> None:
    from plan.errors import PlanError

    config = {**load_stack_config("dev"), f"cloud-tasks-pipeline:{key}": value}
    with pytest.raises(PlanError) as caught:
        evaluate_config("dev", config)
    message = str(caught.value)
    assert f"cloud-tasks-pipeline:{key}" in message
    assert words in message
    assert "\n" not in message
    assert caught.value.declared == 0
