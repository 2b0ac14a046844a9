"""Fixtures for the local-stack tests: the real plan, and a stack root per test.

Every test that brings a stack up gets its own `--root` under tmp_path, so it
never touches a developer's `.devstack/` and never collides with another test;
the `local_stack` fixture runs `down` afterwards even when the test failed, and
fails the test if anything is left running.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract.resources import RUN_SERVICE_TYPE
from devstack.processes import is_running
from devstack.state import load_state
from plan.engine import evaluate
from tests.devstack.stack_helpers import LocalStack


@pytest.fixture(scope="session")
def dev_plan() -> dict[str, Any]:
    """The dev stack's plan, evaluated from the real program once per session."""
    return evaluate("dev").to_json()


@pytest.fixture(scope="session", autouse=True)
def planned_secret_values(dev_plan: dict[str, Any]) -> Iterator[None]:
    """Your stack's worker_secrets come from the shell that runs `up`: give each a test
    value, so that `make test` realises a stack that reads secrets too."""
    names = [
        env["name"]
        for resource in dev_plan["resources"]
        if resource["type"] == RUN_SERVICE_TYPE
        for container in resource["inputs"]["template"]["containers"]
        for env in container.get("envs", [])
        if "valueSource" in env
    ]
    with pytest.MonkeyPatch.context() as patch:
        for name in names:
            if name not in os.environ:
                patch.setenv(name, f"test-value-of-{name}")
        yield


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
