"""Stack config `operators`: queue-scoped roles on every queue, actAs on the invoker,
nothing project-wide; checked on the plan and under an independent Mocks of this test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components import TaskPipeline
from components.config import IdentitiesConfig
from components.loading import parse_config
from contract.resources import (
    CLOUDTASKS_ENQUEUER_ROLE,
    CLOUDTASKS_QUEUE_ADMIN_ROLE,
    CLOUDTASKS_TASK_DELETER_ROLE,
    CLOUDTASKS_VIEWER_ROLE,
    PROJECT_IAM_MEMBER_TYPE,
    QUEUE_IAM_MEMBER_TYPE,
    QUEUE_TYPE,
    SERVICE_ACCOUNT_IAM_MEMBER_TYPE,
)
from plan.engine import evaluate_config
from plan.model import Plan
from tests.components import test_component_queues as queue_tests
from tests.stack_files import THREE_QUEUES, stack_config

KEY = "cloud-tasks-pipeline:"
ONCALL = "group:oncall@example.com"
BOTH = "group:backend@example.com"  # an operator who is also an enqueuer
OPERATOR_ROLES = {
    CLOUDTASKS_VIEWER_ROLE,
    CLOUDTASKS_TASK_DELETER_ROLE,
    CLOUDTASKS_QUEUE_ADMIN_ROLE,
    CLOUDTASKS_ENQUEUER_ROLE,
}


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    config = stack_config(THREE_QUEUES, tmp_path_factory.mktemp("project"))
    config[f"{KEY}operators"] = json.dumps([ONCALL, BOTH])
    config[f"{KEY}enqueuers"] = json.dumps([BOTH])
    return evaluate_config(THREE_QUEUES, config)


def test_every_queue_gives_each_operator_the_four_roles(plan: Plan) -> None:
    queues = {r.outputs["name"] for r in plan.of_type(QUEUE_TYPE)}
    assert len(queues) == 3
    grants = [
        (r.inputs["name"], r.inputs["member"], r.inputs["role"])
        for r in plan.of_type(QUEUE_IAM_MEMBER_TYPE)
    ]
    for member in (ONCALL, BOTH):
        for queue in queues:
            assert {role for q, m, role in grants if q == queue and m == member} == OPERATOR_ROLES
    # One grant per (queue, principal, role): the enqueuer who operates is not granted twice.
    assert len(grants) == len(set(grants)) == 3 * 2 * len(OPERATOR_ROLES)


def test_operators_act_as_the_invoker_once_each(plan: Plan) -> None:
    act_as = [
        (r.inputs["serviceAccountId"], r.inputs["member"])
        for r in plan.of_type(SERVICE_ACCOUNT_IAM_MEMBER_TYPE)
        if r.inputs["role"] == "roles/iam.serviceAccountUser"
    ]
    assert sorted(m for _, m in act_as) == sorted([ONCALL, BOTH])
    assert len({account for account, _ in act_as}) == 1
    assert "tasks-invoker@" in act_as[0][0]


def test_operators_read_the_dead_letters_and_only_those(plan: Plan) -> None:
    # Reading and replaying dead letters needs the records: objectViewer on that bucket.
    grants = {
        (r.inputs["member"], r.inputs["role"])
        for r in plan.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")
        if r.inputs["member"] in (ONCALL, BOTH)
    }
    assert grants == {(ONCALL, "roles/storage.objectViewer"), (BOTH, "roles/storage.objectViewer")}
    [bucket] = plan.of_type("gcp:storage/bucket:Bucket")
    targets = {
        r.inputs["bucket"]
        for r in plan.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")
        if r.inputs["member"] in (ONCALL, BOTH)
    }
    assert targets == {bucket.inputs["name"]}


def test_nothing_project_wide_for_operators(plan: Plan) -> None:
    members = {r.inputs.get("member") for r in plan.of_type(PROJECT_IAM_MEMBER_TYPE)}
    assert not members & {ONCALL, BOTH}
    roles = {r.inputs["role"] for r in plan.resources if "role" in r.inputs}
    assert not {role for role in roles if role.startswith("roles/cloudtasks.")} - OPERATOR_ROLES


def test_under_independent_mocks(tmp_path: Path) -> None:
    recorder = queue_tests.TestIndependentMocks.Recorder()
    pulumi.runtime.set_mocks(recorder, project="cloud-tasks-pipeline", stack="three")
    raw: dict[str, Any] = {
        k.split(":", 1)[1]: v for k, v in queue_tests.STACK_YAML.items() if not k.startswith("gcp:")
    }
    config = parse_config(
        {**raw, "project": "my-tasks-dev", "region": "europe-west1", "operators": [ONCALL]}
    )

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def check() -> pulumi.Output[Any]:
        pipeline = TaskPipeline("tasks", config, stack="three")

        def judge(_: Any) -> None:
            queues = {n for t, n, _ in recorder.resources if t == QUEUE_TYPE}
            grants = {
                (i["name"], i["role"])
                for t, _, i in recorder.resources
                if t == QUEUE_IAM_MEMBER_TYPE and i["member"] == ONCALL
            }
            assert grants == {(f"{q}-0000001", role) for q in queues for role in OPERATOR_ROLES}
            project = [i for t, _, i in recorder.resources if t == PROJECT_IAM_MEMBER_TYPE]
            assert not any(g.get("member") == ONCALL for g in project)

        return pulumi.Output.all(*pipeline.outputs.values()).apply(judge)

    check()


@pytest.mark.parametrize(
    ("operators", "words"),
    [
        (("allUsers",), "anyone"),
        (("oncall@example.com",), "not an IAM principal"),
        ((ONCALL, ONCALL), "twice"),
    ],
)
def test_operators_are_checked_like_enqueuers(operators: tuple[str, ...], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        IdentitiesConfig(operators=operators)
