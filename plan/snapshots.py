"""The committed plan snapshots: tests/snapshots/plan-<stack>.json.

A snapshot is a `Plan` written by `python -m plan snapshot` (`make snapshots`);
the snapshot tests compare each stack's fresh plan with it, and CI diffs a pull
request's plan against the base branch's. Deliberately only file I/O: the
comparison is `plan.diff`.
"""

from __future__ import annotations

import json
from pathlib import Path

from plan.errors import PlanError
from plan.model import Plan
from plan.stack_config import REPO_ROOT

SNAPSHOT_DIR = Path("tests") / "snapshots"
SNAPSHOT_COMMAND = "python -m plan snapshot"


def snapshot_path(stack: str, root: Path = REPO_ROOT) -> Path:
    return root / SNAPSHOT_DIR / f"plan-{stack}.json"


def load_snapshot(stack: str, root: Path = REPO_ROOT) -> Plan:
    path = snapshot_path(stack, root)
    if not path.is_file():
        raise PlanError(
            f"no committed snapshot {path.relative_to(root)}; "
            f"write it with `{SNAPSHOT_COMMAND} --stack {stack}` (make snapshots)"
        )
    return Plan.from_json(json.loads(path.read_text()))


def write_snapshot(plan: Plan, root: Path = REPO_ROOT) -> Path:
    path = snapshot_path(plan.stack, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(plan.dumps())
    return path
