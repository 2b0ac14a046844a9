"""Fixtures for the offline plan engine's tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from plan.engine import evaluate
from plan.model import Plan
from plan.stack_config import REPO_ROOT, available_stacks

STACKS = available_stacks()


@pytest.fixture(scope="session")
def all_plans() -> dict[str, Plan]:
    return {stack: evaluate(stack) for stack in STACKS}


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A scratch project root: the program and the stack files, no snapshots yet.

    Components are imported from the real checkout (it is on sys.path); only the
    files the CLI reads and writes live here.
    """
    shutil.copy(REPO_ROOT / "__main__.py", tmp_path / "__main__.py")
    for stack_file in REPO_ROOT.glob("Pulumi*.yaml"):
        shutil.copy(stack_file, tmp_path / stack_file.name)
    return tmp_path
