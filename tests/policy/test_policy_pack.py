"""The pack itself, served by the real pulumi_policy in its own venv (protobuf 5).

`policy.served.served_pack` starts the pack exactly as the Pulumi CLI starts a
Python policy pack (`python -m pulumi.policy ENGINE policy/`, with
PULUMI_STACK/PULUMI_CONFIG in the environment); the test then speaks Pulumi's
Analyzer gRPC API to it, as the engine does during
`pulumi preview --policy-pack policy`. policy/.venv is made by `make policy-venv`.
"""

from __future__ import annotations

import copy
import subprocess
from typing import Any

import pytest
from pulumi.runtime.proto import analyzer_pb2

from policy.rules import RULE_NAMES, RUN_SERVICE, RUN_SERVICE_IAM_MEMBER
from policy.served import POLICY_PYTHON, served_pack
from tests.policy.policy_plans import ROOT, load_plan

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def policy_venv() -> None:
    # Same recipe as CI and developers use; a no-op when policy/.venv is current.
    subprocess.run(["make", "-s", "policy-venv"], cwd=ROOT, check=True, timeout=300)
    assert POLICY_PYTHON.is_file()


def _first(plan: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(r for r in plan["resources"] if r["type"] == type_)


def test_the_pack_serves_every_rule_as_mandatory() -> None:
    with served_pack("dev") as pack:
        info = pack.info()
    assert info.name == "cloud-tasks-pipeline-policy"
    assert [p.name for p in info.policies] == list(RULE_NAMES)
    assert {p.enforcementLevel for p in info.policies} == {analyzer_pb2.MANDATORY}


def test_the_real_prod_plan_passes_and_violations_are_reported() -> None:
    plan = load_plan("prod")
    with served_pack("prod", {"cloud-tasks-pipeline:dispatch_deadline": "900s"}) as pack:
        for resource in plan["resources"]:
            assert pack.analyze(resource) == [], resource["urn"]
        assert pack.analyze_stack(plan["resources"]) == []

        grant = copy.deepcopy(_first(plan, RUN_SERVICE_IAM_MEMBER))
        grant["inputs"]["member"] = "allUsers"
        [diagnostic] = pack.analyze(grant)
        assert diagnostic.policyName == "cloud-run-no-public-invoker"
        assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
        assert "granted to allUsers" in diagnostic.message

        # The stack name reaches the rule through pulumi.get_stack() in the pack.
        service = copy.deepcopy(_first(plan, RUN_SERVICE))
        service["inputs"]["deletionProtection"] = False
        [diagnostic] = pack.analyze(service)
        assert diagnostic.policyName == "prod-deletion-protection"

        # The dispatch deadline reaches the stack rule through the stack config.
        short = copy.deepcopy(plan)
        _first(short, RUN_SERVICE)["inputs"]["template"]["timeout"] = "899s"
        [diagnostic] = pack.analyze_stack(short["resources"])
        assert diagnostic.policyName == "cloud-run-timeout-covers-dispatch-deadline"
        assert "dispatch deadline 900s" in diagnostic.message
        assert diagnostic.urn == _first(plan, RUN_SERVICE)["urn"]


def test_outside_prod_deletion_protection_may_be_off() -> None:
    service = copy.deepcopy(_first(load_plan("dev"), RUN_SERVICE))
    service["inputs"]["deletionProtection"] = False
    with served_pack("dev") as pack:
        assert pack.analyze(service) == []


def test_the_pack_reads_every_queue_and_route_from_the_stack_config() -> None:
    # Queue reports (no route) and its 1800s deadline reach the stack rules through the
    # stack config's `queues` and `routes` maps, which Pulumi hands over as JSON text.
    plan = load_plan("dev")
    config = {
        "cloud-tasks-pipeline:dispatch_deadline": "60s",
        "cloud-tasks-pipeline:queues": '{"email": {}, "reports": {"dispatch_deadline": "30m"}}',
        "cloud-tasks-pipeline:routes": '{"enrich": "email"}',
    }
    with served_pack("dev", config) as pack:
        diagnostics = pack.analyze_stack(plan["resources"])
    by_rule = {d.policyName: d.message for d in diagnostics}
    assert set(by_rule) == {"queue-reached-by-route", "cloud-run-timeout-covers-dispatch-deadline"}
    assert "queue 'reports' is reached by no route" in by_rule["queue-reached-by-route"]
    assert "dispatch deadline 1800s" in by_rule["cloud-run-timeout-covers-dispatch-deadline"]
