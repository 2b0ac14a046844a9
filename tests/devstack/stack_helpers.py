"""Helpers for the local-stack tests: run the CLI and the smoke test as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract.names import EMULATOR_HOST_ENV
from devstack import runtime
from devstack.ports import RequestedPorts
from devstack.state import StackPaths, load_state

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE = REPO_ROOT / "scripts" / "smoke_test.py"


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        check=False,
    )


def run_smoke(
    outputs: Path, *extra: str, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SMOKE), "--outputs", str(outputs), *extra],
        # The smoke test must find the emulator through the outputs file alone.
        env={k: v for k, v in os.environ.items() if k != EMULATOR_HOST_ENV},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        check=False,
    )


@dataclass
class LocalStack:
    root: Path
    stack: str = "dev"
    started: list[runtime.Running] = field(default_factory=list)

    @property
    def paths(self) -> StackPaths:
        return StackPaths.for_stack(self.stack, self.root)

    def cli(
        self, command: str, *args: str, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(
            command, "--stack", self.stack, "--root", str(self.root), *args, timeout=timeout
        )

    def up(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`up --detach` through the command line, as a user runs it."""
        result = self.cli("up", "--detach", *args)
        assert result.returncode == 0, f"up failed:\n{result.stdout}\n{result.stderr}"
        return result

    def start(self, *, plan_file: Path | None = None, ports: RequestedPorts | None = None) -> None:
        """`up` in this process (`devstack.runtime.up`), for tests about what the stack
        does rather than about the command line: no interpreter start, no imports."""
        running = runtime.up(
            self.stack, root=self.root, plan_file=plan_file, ports=ports, say=lambda _: None
        )
        self.started.append(running)

    def stop(self) -> None:
        """`down` in this process, then reap the children this process started."""
        runtime.down(self.stack, root=self.root, say=lambda _: None)
        for running in self.started:
            for child in running.children.values():
                child.process.wait(timeout=10)
        self.started.clear()

    def outputs(self) -> dict[str, Any]:
        """outputs.json: strings, and the maps (queues, routes, dispatch_deadlines)."""
        data: dict[str, Any] = json.loads(self.paths.outputs_file.read_text())
        return data

    def recorded_pids(self) -> dict[str, int]:
        state = load_state(self.paths)
        assert state is not None, "no state file: the stack is not up"
        return {p.role: p.pid for p in state.processes}


def write_plan(path: Path, plan: dict[str, Any]) -> Path:
    path.write_text(json.dumps(plan), encoding="utf-8")
    return path
