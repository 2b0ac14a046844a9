"""Fixtures for the operations tests: every committed stack's plan, evaluated once per
session under the same mocks `python -m plan` uses."""

from __future__ import annotations

import pytest

from plan.engine import evaluate
from plan.model import Plan
from plan.stack_config import available_stacks

STACKS = available_stacks()


@pytest.fixture(scope="session")
def all_plans() -> dict[str, Plan]:
    return {stack: evaluate(stack) for stack in STACKS}


@pytest.fixture(params=STACKS)
def plan(all_plans: dict[str, Plan], request: pytest.FixtureRequest) -> Plan:
    return all_plans[request.param]
