"""Plans the policy tests run on: the committed snapshot of every stack.

The snapshots (tests/snapshots/plan-<stack>.json, rewritten by `make snapshots`)
are the offline plan of the real program with each stack's real config, and
their own tests keep them current; so a rule that passes here passes on what
`pulumi preview` would send the pack.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from policy.check import stack_dispatch_deadline

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTS = ROOT / "tests" / "snapshots"
STACKS = ("dev", "staging", "prod")


def load_plan(stack: str) -> dict[str, Any]:
    path = SNAPSHOTS / f"plan-{stack}.json"
    assert path.is_file(), f"{path} is missing: run `make snapshots`"
    plan: dict[str, Any] = json.loads(path.read_text())
    return plan


def deadline(stack: str) -> int:
    """The dispatch deadline the pack reads from the stack's config (Pulumi.<stack>.yaml)."""
    return stack_dispatch_deadline(stack, ROOT)


def resources_of(plan: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    found = [r for r in plan["resources"] if r["type"] == type_]
    assert found, f"the {plan['stack']} plan has no {type_}; the mutation has nothing to change"
    return found


def mutated(plan: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(plan)
