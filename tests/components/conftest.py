"""Fixtures for the Pulumi program's tests: the plan of every committed stack,
evaluated once per session under the same mocks `python -m plan` uses,
and the raw stack files to compare it against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from plan.engine import evaluate
from plan.model import Plan
from plan.stack_config import REPO_ROOT, available_stacks

STACKS = available_stacks()
PREFIX = "cloud-tasks-pipeline:"


@pytest.fixture(scope="session")
def all_plans() -> dict[str, Plan]:
    return {stack: evaluate(stack) for stack in STACKS}


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def plan(all_plans: dict[str, Plan], stack: str) -> Plan:
    return all_plans[stack]


@pytest.fixture
def stack_config(stack: str) -> dict[str, Any]:
    """The stack file's values by short key (`gcp:` keys keep their prefix)."""
    document = yaml.safe_load(Path(REPO_ROOT, f"Pulumi.{stack}.yaml").read_text())
    return {key.removeprefix(PREFIX): value for key, value in document["config"].items()}
