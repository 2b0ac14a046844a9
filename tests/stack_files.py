"""Stack files that are not committed stacks: the plan of a stack file kept under
tests/stacks/, evaluated as `python -m plan` evaluates a committed one.

A `Pulumi.<name>.yaml` in the repository root would be a deployable stack (and
every test over the committed stacks would pick it up), so these live in a
project directory of their own: a temporary copy of `Pulumi.yaml` next to the
stack file, whose config the CLI's merge rules turn into the program's input.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from plan.engine import evaluate_config
from plan.model import Plan
from plan.stack_config import REPO_ROOT, load_stack_config

STACK_FILES = Path(__file__).resolve().parent / "stacks"
THREE_QUEUES = "three-queues"
"""Queues default, email (2/s, 3 attempts) and reports (30 min deadline, a day of retries);
routes enrich, record -> email, record_sync -> reports (tests/service/fixtures_tasks.py)."""


def stack_config(stack: str, project_dir: Path) -> dict[str, str]:
    """tests/stacks/Pulumi.<stack>.yaml as the CLI hands it to the program."""
    project_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "Pulumi.yaml", project_dir / "Pulumi.yaml")
    shutil.copy(STACK_FILES / f"Pulumi.{stack}.yaml", project_dir / f"Pulumi.{stack}.yaml")
    return load_stack_config(stack, project_dir)


def plan_of(stack: str, project_dir: Path) -> Plan:
    """The offline plan of tests/stacks/Pulumi.<stack>.yaml (the real program, mocks)."""
    return evaluate_config(stack, stack_config(stack, project_dir))
