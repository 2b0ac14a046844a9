"""Fixtures for the local-stack tests: the real plan, and a stack root per test.

Every test that brings a stack up gets its own `--root` under tmp_path, so it
never touches a developer's `.devstack/` and never collides with another test;
the `local_stack` fixture runs `down` afterwards even when the test failed, and
fails the test if anything is left running.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.processes import is_running
from devstack.state import load_state
from plan.engine import evaluate
from tests.devstack.stack_helpers import LocalStack


@pytest.fixture(scope="session")
def dev_plan() -> dict[str, Any]:
    """The dev stack's plan, evaluated from the real program once per session."""
    return evaluate("dev").to_json()


@pytest.fixture
def local_stack(tmp_path: Path) -> Iterator[LocalStack]:
    stack = LocalStack(root=tmp_path / "devstack")
    try:
        yield stack
    finally:
        state = load_state(stack.paths)
        pids = {p.role: p.pid for p in state.processes} if state is not None else {}
        stack.stop()
        leftover = [f"{role} {pid}" for role, pid in pids.items() if is_running(pid)]
        assert not leftover, f"down left processes running: {leftover}"
