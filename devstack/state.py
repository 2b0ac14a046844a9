"""Where a local stack keeps its files, and the state file that remembers what it started.

Layout of `.devstack/<stack>/` (the root is `.devstack` at the repository root,
or `$DEVSTACK_ROOT`, or `--root`):

    emulator.db     the emulator's data file (queues and tasks survive restarts)
    emulator.log    the emulator's stdout and stderr
    worker.log      the worker's stdout and stderr
    state.json      pids, ports and process identities of what `up` started
    outputs.json    the stack outputs (contract.names.LOCAL_OUTPUT_KEYS)

This module only reads and writes those files; it deliberately starts and stops
nothing (that is `devstack.processes`) and knows nothing about plans.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contract.names import LOCAL_OUTPUT_KEYS, MAP_STACK_OUTPUT_KEYS, OPTIONAL_STACK_OUTPUT_KEYS

OPTIONAL_OUTPUT_KEYS = (*OPTIONAL_STACK_OUTPUT_KEYS, *MAP_STACK_OUTPUT_KEYS)

ROOT_ENV = "DEVSTACK_ROOT"
STATE_VERSION = 1
_STACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class StateError(Exception):
    """The state directory or one of its files is unusable; the message says how to fix it."""


def default_root() -> Path:
    """`$DEVSTACK_ROOT`, else `.devstack` at the repository root (next to `devstack/`)."""
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[1] / ".devstack"


@dataclass(frozen=True)
class StackPaths:
    """The files of one stack's local realisation."""

    stack: str
    root: Path

    @classmethod
    def for_stack(cls, stack: str, root: Path | None = None) -> StackPaths:
        if not _STACK_NAME.fullmatch(stack):
            raise StateError(
                f"stack name {stack!r} is not usable as a directory name: use letters, digits, "
                "'-', '_' or '.', starting with a letter or digit (for example --stack dev)"
            )
        return cls(stack=stack, root=(root or default_root()).resolve())

    @property
    def dir(self) -> Path:
        return self.root / self.stack

    @property
    def emulator_data(self) -> Path:
        return self.dir / "emulator.db"

    @property
    def emulator_log(self) -> Path:
        return self.dir / "emulator.log"

    @property
    def worker_log(self) -> Path:
        return self.dir / "worker.log"

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def outputs_file(self) -> Path:
        return self.dir / "outputs.json"

    def ensure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)


@dataclass
class ProcessRecord:
    """One process `up` started, with enough identity to tell it from a recycled pid."""

    role: str  # "emulator" | "worker"
    pid: int
    argv: list[str]
    log: str
    # Kernel start time of the process (clock ticks since boot, /proc/PID/stat field 22);
    # with the pid it identifies the process even after the pid is reused.
    start_ticks: int | None
    url: str  # the base URL its health is checked on
    health_path: str


@dataclass
class StackState:
    """What `up` realised: processes, addresses and the plan's resource accounting."""

    stack: str
    plan_source: str
    started_at: float
    ready_seconds: float
    plan_seconds: float
    processes: list[ProcessRecord] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    realised: list[dict[str, str]] = field(default_factory=list)
    no_local_effect: list[dict[str, str]] = field(default_factory=list)
    substitutions: list[str] = field(default_factory=list)
    # The plan's alert policies as thresholds (devstack.alert_thresholds), for `watch`.
    alerts: list[dict[str, Any]] = field(default_factory=list)
    # Set by `down` before it stops anything, so a foreground `up` watching its
    # children knows their exit is a shutdown and not a crash.
    stopping: bool = False
    version: int = STATE_VERSION

    def process(self, role: str) -> ProcessRecord | None:
        return next((p for p in self.processes if p.role == role), None)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StackState:
        if data.get("version") != STATE_VERSION:
            raise StateError(
                f"state file version {data.get('version')!r} is not {STATE_VERSION}: it was "
                "written by another version of devstack; stop its processes by hand if any "
                "still run, then delete the stack's state.json"
            )
        fields = dict(data)
        fields["processes"] = [ProcessRecord(**p) for p in data.get("processes", [])]
        return cls(**fields)


def _write_atomic(path: Path, data: object) -> None:
    # A reader (status, the enqueue helper, a test) must never see half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def save_state(paths: StackPaths, state: StackState) -> None:
    paths.ensure()
    _write_atomic(paths.state_file, state.to_json())


def load_state(paths: StackPaths) -> StackState | None:
    """The recorded state, or None when the stack was never brought up (or was taken down)."""
    try:
        raw = paths.state_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StateError(
            f"{paths.state_file} is not valid JSON ({exc}); if no devstack process of this "
            "stack still runs, delete the file and run `up` again"
        ) from exc
    if not isinstance(data, dict):
        raise StateError(f"{paths.state_file} does not hold a JSON object; delete it")
    return StackState.from_json(data)


def clear_state(paths: StackPaths) -> None:
    """Forget the processes (after they were stopped); data and logs stay for inspection."""
    paths.state_file.unlink(missing_ok=True)
    paths.outputs_file.unlink(missing_ok=True)


def write_outputs(paths: StackPaths, outputs: Mapping[str, Any]) -> None:
    """The stack outputs with the local keys; an optional output (one a plan of an
    older program lacks) is written when present. `routes` may be an empty map."""
    required = [k for k in LOCAL_OUTPUT_KEYS if k not in OPTIONAL_OUTPUT_KEYS]
    missing = [k for k in required if not outputs.get(k)]
    if missing:
        # A programming error rather than user input: every key is computed by `up`.
        raise StateError(f"refusing to write {paths.outputs_file}: no value for {missing}")
    paths.ensure()
    _write_atomic(
        paths.outputs_file,
        {k: outputs[k] for k in LOCAL_OUTPUT_KEYS if outputs.get(k) is not None},
    )
