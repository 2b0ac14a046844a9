"""Plans the policy tests run on: the committed snapshot of every stack.

Until the plan snapshots exist (tests/snapshots/plan-<stack>.json, written by
`make snapshots`), a hand-made plan of the same shape stands in for them
(tests/policy/fixtures/plan-fixture.json), so the rules are always exercised.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from policy.check import stack_dispatch_deadline
from policy.rules import parse_duration_s

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTS = ROOT / "tests" / "snapshots"
FIXTURE = Path(__file__).parent / "fixtures" / "plan-fixture.json"
STACKS = ("dev", "staging", "prod")
PROJECT = "cloud-tasks-pipeline"


def snapshot_path(stack: str) -> Path:
    return SNAPSHOTS / f"plan-{stack}.json"


def load_plan(stack: str) -> dict[str, Any]:
    """The plan of `stack`: its snapshot, else the fixture re-labelled for that stack."""
    path = snapshot_path(stack)
    if path.is_file():
        plan: dict[str, Any] = json.loads(path.read_text())
        return plan
    plan = json.loads(FIXTURE.read_text())
    plan["stack"] = stack
    for resource in plan["resources"]:
        resource["urn"] = resource["urn"].replace("urn:pulumi:dev::", f"urn:pulumi:{stack}::")
        if resource["type"] == "gcp:cloudrunv2/service:Service":
            # What the program derives from the stack's config.
            config = stack_config(stack)
            resource["inputs"]["deletionProtection"] = bool(
                config.get(f"{PROJECT}:deletion_protection", True)
            )
            timeout = parse_duration_s(config.get(f"{PROJECT}:request_timeout", "600s"), "timeout")
            resource["inputs"]["template"]["timeout"] = f"{int(timeout)}s"
    return plan


def stack_config(stack: str) -> dict[str, Any]:
    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        return {}
    document = yaml.safe_load(path.read_text()) or {}
    config: dict[str, Any] = document.get("config") or {}
    return config


def deadline(stack: str) -> int:
    return stack_dispatch_deadline(stack, ROOT)


def resources_of(plan: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    found = [r for r in plan["resources"] if r["type"] == type_]
    assert found, f"the {plan['stack']} plan has no {type_}; the mutation has nothing to change"
    return found


def mutated(plan: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(plan)
