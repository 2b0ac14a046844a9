"""Run `__main__.py` for a stack under Pulumi's in-process mocks and record the plan.

`evaluate(stack)` loads `Pulumi.<stack>.yaml` (`plan.stack_config`) into the
runtime config, runs the real program with `plan.mocks.PlanMocks`, and records
every RegisterResource the program makes: type, name, parent, dependencies,
provider and resolved inputs with the engine's camelCase names, plus the
outputs the mocks computed and the program's warnings (`pulumi.log.warn`).
The result is a `plan.model.Plan`.

Each evaluation runs on its own thread: Pulumi keeps its settings, config and
root stack in context variables, and a new thread starts with an empty context
and its own event loop, so several stacks evaluate in one process without
leaking into each other.

Deliberately not here: the Pulumi CLI, provider plugins, Google Cloud; judging
the plan (tests and policy do that); reading or writing snapshot files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import runpy
import sys
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks, rpc
from pulumi.runtime.settings import get_root_resource
from pulumi.runtime.stack import run_pulumi_func

from contract.names import STACK_OUTPUT_KEYS
from contract.resources import GCP_PROJECT_KEY, GCP_REGION_KEY, PROJECT_NAME
from plan.errors import PlanError
from plan.mocks import PlanMocks
from plan.model import Plan, PlannedResource
from plan.stack_config import REPO_ROOT, load_stack_config

SECRET_PLACEHOLDER = "[secret]"  # noqa: S105 (a mask, not a secret)
STACK_TYPE = "pulumi:pulumi:Stack"


def _plain(value: Any) -> Any:
    """Deserialised RPC values as JSON: secrets masked, unknowns named."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return SECRET_PLACEHOLDER
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        # Protobuf Structs carry every number as a double; 5.0 dispatches is 5.
        return int(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


@dataclass
class _Registration:
    urn: str
    type: str
    name: str
    parent: str
    dependencies: list[str]
    provider: str
    inputs: dict[str, Any]
    custom: bool
    protect: bool
    retain_on_delete: bool


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, also keeping what `Mocks.new_resource` cannot see: parent,
    dependencies and provider of every RegisterResource."""

    def __init__(self, mocks: pulumi_mocks.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[_Registration] = []
        self.stack_urn: str | None = None
        self._lock = threading.Lock()  # the SDK calls the monitor from executor threads

    def RegisterResource(self, request: Any) -> Any:  # gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type == STACK_TYPE:
            self.stack_urn = response.urn
            return response
        inputs = rpc.deserialize_properties(request.object, keep_unknowns=True)
        with self._lock:
            self.registrations.append(
                _Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    dependencies=list(request.dependencies),
                    provider=request.provider,
                    inputs=inputs,
                    custom=bool(request.custom),
                    protect=bool(request.protect),
                    retain_on_delete=bool(request.retainOnDelete),
                )
            )
        return response

    def planned_resources(self) -> list[PlannedResource]:
        """Every registration with the outputs the mocks computed for it."""
        states = self.get_registered_resources()
        resources = []
        for reg in self.registrations:
            state = states.get(reg.urn)
            computed: dict[str, Any] = {}
            if reg.custom and state is not None:
                computed = {"id": state.id}
                computed.update(
                    {k: v for k, v in state.state.items() if k not in reg.inputs or k == "name"}
                )
            resources.append(
                PlannedResource(
                    urn=reg.urn,
                    type=reg.type,
                    name=reg.name,
                    parent=None if reg.parent in ("", self.stack_urn) else reg.parent,
                    dependencies=tuple(sorted(set(reg.dependencies))),
                    provider=reg.provider or None,
                    inputs=_plain(reg.inputs),
                    outputs=_plain(computed),
                    protect=reg.protect,
                    retain_on_delete=reg.retain_on_delete,
                )
            )
        return _ordered(resources)


def _ordered(resources: list[PlannedResource]) -> list[PlannedResource]:
    """A deterministic registration order: parents and dependencies first, ties by URN.

    The SDK registers from executor threads, so the order calls arrive in can
    vary between runs; this order is one the engine could have seen, and stable.
    """
    by_urn = {r.urn: r for r in resources}
    placed: set[str] = set()
    result: list[PlannedResource] = []
    pending = sorted(by_urn)
    while pending:
        progressed = False
        for urn in list(pending):
            r = by_urn[urn]
            before = [d for d in (r.parent, *r.dependencies) if d is not None and d in by_urn]
            if all(d in placed for d in before):
                result.append(r)
                placed.add(urn)
                pending.remove(urn)
                progressed = True
                break
        if not progressed:  # a cycle cannot come from Pulumi; keep the rest by URN
            result.extend(by_urn[u] for u in pending)
            break
    return result


@contextlib.contextmanager
def _event_loop(stack: str) -> Iterator[asyncio.AbstractEventLoop]:
    """A fresh event loop for this thread, whose executor threads each get one too.

    The SDK calls the monitor from the loop's executor threads, and the mock
    monitor needs an event loop in each; creating them here lets us close them
    all afterwards instead of leaking them until interpreter exit.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    thread_loops: list[asyncio.AbstractEventLoop] = []
    thread_loops_lock = threading.Lock()

    def give_thread_a_loop() -> None:
        thread_loop = asyncio.new_event_loop()
        asyncio.set_event_loop(thread_loop)
        with thread_loops_lock:
            thread_loops.append(thread_loop)

    loop.set_default_executor(
        ThreadPoolExecutor(thread_name_prefix=f"plan-{stack}-rpc", initializer=give_thread_a_loop)
    )
    try:
        yield loop
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        for thread_loop in thread_loops:
            thread_loop.close()
        loop.close()
        asyncio.set_event_loop(None)


class _WarningLog(logging.Handler):
    """Keeps the program's `pulumi.log.warn` messages (the mock engine logs them here)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.WARNING:
            self.messages.append(record.getMessage())


def _evaluate_here(stack: str, root: Path, config: dict[str, str]) -> Plan:
    warnings = _WarningLog()
    logger = logging.getLogger(f"plan.engine.{stack}.{threading.get_ident()}")
    logger.propagate = False
    logger.addHandler(warnings)
    with _event_loop(stack) as loop:
        mocks = PlanMocks(
            stack, config.get(GCP_PROJECT_KEY, "unset-project"), config.get(GCP_REGION_KEY, "unset")
        )
        monitor = RecordingMonitor(mocks)
        pulumi.runtime.set_mocks(
            mocks,
            project=PROJECT_NAME,
            stack=stack,
            preview=False,
            logger=logger,
            monitor=monitor,
        )
        pulumi.runtime.set_all_config(config)
        program = root / "__main__.py"

        def run_program() -> None:
            runpy.run_path(str(program), run_name="__main__")

        try:
            loop.run_until_complete(run_pulumi_func(run_program))
        except Exception as exc:
            from components.config import ConfigError

            if isinstance(exc, ConfigError):
                raise PlanError(str(exc), declared=len(monitor.registrations)) from exc
            raise
        exported: dict[str, Any] = dict(getattr(get_root_resource(), "outputs", {}))
        resolved = loop.run_until_complete(pulumi.Output.from_input(exported).future())
        outputs = {k: _plain(v) for k, v in (resolved or {}).items()}
        return Plan(
            stack=stack,
            project=PROJECT_NAME,
            resources=tuple(monitor.planned_resources()),
            outputs=outputs,
            warnings=tuple(dict.fromkeys(warnings.messages)),
        )


def evaluate(stack: str = "dev", root: Path = REPO_ROOT) -> Plan:
    """Evaluate `__main__.py` for `stack` (its `Pulumi.<stack>.yaml`) under mocks.

    Raises `PlanError` when there is no such stack or its config is invalid
    (the message is the program's own `ConfigError`, naming key, value and fix).
    """
    return evaluate_config(stack, load_stack_config(stack, root), root)


def evaluate_config(stack: str, config: Mapping[str, str], root: Path = REPO_ROOT) -> Plan:
    """Evaluate the program with an explicit config (namespaced keys, string values),
    as the CLI would pass it; for variants that have no stack file."""
    config = dict(config)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    result: list[Plan] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(_evaluate_here(stack, root, config))
        except BaseException as exc:  # handed to the calling thread
            errors.append(exc)

    # A fresh thread = a fresh contextvars context and event loop (see module doc).
    worker = threading.Thread(target=target, name=f"plan-{stack}", daemon=True)
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    plan = result[0]
    missing = [key for key in STACK_OUTPUT_KEYS if key not in plan.outputs]
    if missing:
        raise PlanError(f"the program did not export {', '.join(missing)} for stack {stack}")
    return plan
