"""The dead-letter bucket and what the worker is told, on every committed stack's plan.

Expected values are written out from the stack files and Google's names (roles,
bucket settings), never taken from `components.dead_letters`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from plan.engine import evaluate_config
from plan.model import Plan
from plan.stack_config import load_stack_config
from tests.components.test_component_invariants import account, env_of, seconds

BUCKET = "gcp:storage/bucket:Bucket"
BUCKET_GRANT = "gcp:storage/bucketIAMMember:BucketIAMMember"
KEY = "cloud-tasks-pipeline:"


def dev_with(**overrides: str) -> Plan:
    config = load_stack_config("dev")
    config.update({f"{KEY}{k}": v for k, v in overrides.items()})
    return evaluate_config("dev", config)


def bucket_name(plan: Plan) -> str:
    name: str = plan.one(BUCKET).inputs["name"]
    return name


class TestTheBucket:
    def test_private_uniform_and_in_the_stacks_region(
        self, plan: Plan, stack_config: dict[str, Any]
    ) -> None:
        inputs = plan.one(BUCKET).inputs
        assert inputs["uniformBucketLevelAccess"] is True
        assert inputs["publicAccessPrevention"] == "enforced"
        assert inputs["location"] == stack_config["gcp:region"]
        assert inputs["project"] == stack_config["gcp:project"]
        assert inputs["forceDestroy"] is False
        # Global names: the project id keeps them apart across projects.
        assert inputs["name"].startswith(stack_config["gcp:project"] + "-")
        assert len(inputs["name"]) <= 63

    def test_retention_follows_config(self, plan: Plan, stack_config: dict[str, Any]) -> None:
        days = stack_config.get("dead_letter_retention_days", 30)
        inputs = plan.one(BUCKET).inputs
        assert inputs["retentionPolicy"] == {"retentionPeriod": str(days * 86400)}
        assert inputs["lifecycleRules"] == [
            {"action": {"type": "Delete"}, "condition": {"age": days}}
        ]

    def test_protected_like_the_service(self, plan: Plan, stack_config: dict[str, Any]) -> None:
        assert plan.one(BUCKET).protect is bool(stack_config.get("deletion_protection", True))

    def test_the_output_and_the_worker_name_the_bucket(self, plan: Plan) -> None:
        name = bucket_name(plan)
        assert plan.outputs["dead_letter_bucket"] == name
        assert env_of(plan)["TASKS_DEAD_LETTER_BUCKET"] == name


class TestLeastPrivilege:
    def test_the_runtime_account_may_only_create_objects_in_this_bucket(
        self, plan: Plan, stack_config: dict[str, Any]
    ) -> None:
        runtime = account(stack_config, "-runtime").member
        grants = [
            (r.type, r.inputs.get("bucket"), r.inputs["role"])
            for r in plan.resources
            if r.inputs.get("member") == runtime and "role" in r.inputs
        ]
        assert grants == [(BUCKET_GRANT, bucket_name(plan), "roles/storage.objectCreator")]

    def test_no_storage_role_anywhere_but_on_the_bucket(self, plan: Plan) -> None:
        for resource in plan.resources:
            role = str(resource.inputs.get("role", ""))
            if role.startswith("roles/storage."):
                assert resource.type == BUCKET_GRANT
                assert resource.inputs["bucket"] == bucket_name(plan)

    def test_without_readers_nobody_else_may_read(self, plan: Plan) -> None:
        roles = [r.inputs["role"] for r in plan.of_type(BUCKET_GRANT)]
        assert roles == ["roles/storage.objectCreator"]


class TestReaders:
    def test_each_reader_may_view_objects_of_this_bucket_only(self) -> None:
        readers = ["group:oncall@example.com", "user:alice@example.com"]
        plan = dev_with(dead_letter_readers=json.dumps(readers))
        viewers = {
            (r.inputs["member"], r.inputs["bucket"])
            for r in plan.of_type(BUCKET_GRANT)
            if r.inputs["role"] == "roles/storage.objectViewer"
        }
        assert viewers == {(m, bucket_name(plan)) for m in readers}

    @pytest.mark.parametrize("member", ["allUsers", "allAuthenticatedUsers", "alice"])
    def test_public_or_malformed_readers_are_refused(self, member: str) -> None:
        with pytest.raises(Exception, match="dead_letter_readers"):
            dev_with(dead_letter_readers=json.dumps([member]))

    def test_retention_days_configurable_and_bounded(self) -> None:
        plan = dev_with(dead_letter_retention_days="7")
        assert plan.one(BUCKET).inputs["retentionPolicy"] == {"retentionPeriod": "604800"}
        with pytest.raises(Exception, match="dead_letter_retention_days"):
            dev_with(dead_letter_retention_days="0")


class TestRetryPolicies:
    def test_the_worker_knows_the_queues_retry_config(
        self, plan: Plan, stack_config: dict[str, Any]
    ) -> None:
        policies = json.loads(env_of(plan)["TASKS_RETRY_POLICIES"])
        assert list(policies) == ["default"]
        default = policies["default"]
        assert default["max_attempts"] == stack_config["max_attempts"]
        assert default["max_doublings"] == stack_config["max_doublings"]
        for field in ("min_backoff", "max_backoff", "max_retry_duration"):
            assert default[field] == seconds(stack_config[field]), field


class TestDroppedTasksMetric:
    def test_the_queue_logs_the_attempts_the_metric_reads(
        self, plan: Plan, stack_config: dict[str, Any]
    ) -> None:
        logging_config = plan.one("gcp:cloudtasks/queue:Queue").inputs["stackdriverLoggingConfig"]
        assert logging_config["samplingRatio"] > 0
