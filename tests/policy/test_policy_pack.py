"""The pack itself, served by the real pulumi_policy in its own venv (protobuf 5).

The pack is started exactly as the Pulumi CLI starts a Python policy pack
(`python -m pulumi.policy ENGINE policy/`, with PULUMI_STACK/PULUMI_CONFIG in
the environment); the test then speaks Pulumi's Analyzer gRPC API to it, as the
engine does during `pulumi preview --policy-pack policy`, using the proto stubs
of the main venv's pulumi SDK. policy/.venv is made by `make policy-venv`.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from policy.rules import RULE_NAMES, RUN_SERVICE, RUN_SERVICE_IAM_MEMBER
from tests.policy.policy_plans import ROOT, load_plan

POLICY_PYTHON = ROOT / "policy" / ".venv" / "bin" / "python"
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def policy_python() -> Path:
    # Same recipe as CI and developers use; a no-op when policy/.venv is current.
    subprocess.run(["make", "-s", "policy-venv"], cwd=ROOT, check=True, timeout=300)
    assert POLICY_PYTHON.is_file()
    return POLICY_PYTHON


@contextmanager
def served_pack(python: Path, stack: str, config: dict[str, str]) -> Iterator[Any]:
    env = {
        **os.environ,
        "PULUMI_PROJECT": "cloud-tasks-pipeline",
        "PULUMI_STACK": stack,
        "PULUMI_DRY_RUN": "true",
        "PULUMI_CONFIG": json.dumps(config),
    }
    process = subprocess.Popen(
        [str(python), "-u", "-m", "pulumi.policy", "127.0.0.1:1", str(ROOT / "policy")],
        cwd=ROOT / "policy",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()  # PolicyPack prints its port when serving
        if not line.isdigit():
            process.kill()
            _, err = process.communicate(timeout=10)
            pytest.fail(f"the pack did not start: {line!r}\n{err}")
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        try:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
        finally:
            channel.close()
    finally:
        process.kill()
        process.wait(timeout=10)


def _struct(props: dict[str, Any]) -> struct_pb2.Struct:
    return json_format.ParseDict(props, struct_pb2.Struct())


def _analyze(stub: Any, resource: dict[str, Any]) -> list[Any]:
    response = stub.Analyze(
        analyzer_pb2.AnalyzeRequest(
            type=resource["type"],
            properties=_struct(resource["inputs"]),
            urn=resource["urn"],
            name=resource["name"],
        ),
        timeout=20,
    )
    return list(response.diagnostics)


def _analyze_stack(stub: Any, plan: dict[str, Any]) -> list[Any]:
    request = analyzer_pb2.AnalyzeStackRequest(
        resources=[
            analyzer_pb2.AnalyzerResource(
                type=r["type"],
                properties=_struct({**(r.get("outputs") or {}), **(r.get("inputs") or {})}),
                urn=r["urn"],
                name=r["name"],
            )
            for r in plan["resources"]
        ]
    )
    return list(stub.AnalyzeStack(request, timeout=20).diagnostics)


def _first(plan: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(r for r in plan["resources"] if r["type"] == type_)


def test_the_pack_serves_every_rule_as_mandatory(policy_python: Path) -> None:
    with served_pack(policy_python, "dev", {}) as stub:
        info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=20)
    assert info.name == "cloud-tasks-pipeline-policy"
    assert [p.name for p in info.policies] == list(RULE_NAMES)
    assert {p.enforcementLevel for p in info.policies} == {analyzer_pb2.MANDATORY}


def test_the_real_prod_plan_passes_and_violations_are_reported(policy_python: Path) -> None:
    plan = load_plan("prod")
    config = {"cloud-tasks-pipeline:dispatch_deadline": "900s"}
    with served_pack(policy_python, "prod", config) as stub:
        for resource in plan["resources"]:
            assert _analyze(stub, resource) == [], resource["urn"]
        assert _analyze_stack(stub, plan) == []

        grant = json.loads(json.dumps(_first(plan, RUN_SERVICE_IAM_MEMBER)))
        grant["inputs"]["member"] = "allUsers"
        [diagnostic] = _analyze(stub, grant)
        assert diagnostic.policyName == "cloud-run-no-public-invoker"
        assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
        assert "granted to allUsers" in diagnostic.message

        # The stack name reaches the rule through pulumi.get_stack() in the pack.
        service = json.loads(json.dumps(_first(plan, RUN_SERVICE)))
        service["inputs"]["deletionProtection"] = False
        [diagnostic] = _analyze(stub, service)
        assert diagnostic.policyName == "prod-deletion-protection"

        # The dispatch deadline reaches the stack rule through the stack config.
        short = json.loads(json.dumps(plan))
        _first(short, RUN_SERVICE)["inputs"]["template"]["timeout"] = "899s"
        [diagnostic] = _analyze_stack(stub, short)
        assert diagnostic.policyName == "cloud-run-timeout-covers-dispatch-deadline"
        assert "dispatch deadline 900s" in diagnostic.message
        assert diagnostic.urn == _first(plan, RUN_SERVICE)["urn"]


def test_outside_prod_deletion_protection_may_be_off(policy_python: Path) -> None:
    plan = load_plan("dev")
    service = json.loads(json.dumps(_first(plan, RUN_SERVICE)))
    service["inputs"]["deletionProtection"] = False
    with served_pack(policy_python, "dev", {}) as stub:
        assert _analyze(stub, service) == []
