"""The worker's task types as contract files: one JSON Schema per type.

The types are the ones the worker of any stack registers: the built-ins
(`service.handlers`) and every module a stack lists in `task_modules`, loaded
exactly as the worker loads them (`service.plugins.load_task_modules`). Each
schema is the payload model's `model_json_schema()` in validation mode (what
the worker accepts), with `$schema` (pydantic emits draft 2020-12) and a
`$comment` naming the model and the command that regenerates it.

Deliberately not here: comparing contracts (`task_contracts.compat`) or
writing them (`task_contracts.store`); and no discovery: a type the worker
would not load is not a contract.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

from contract.resources import config_key
from service.config import ConfigError
from service.plugins import load_task_modules
from service.task_registry import TaskRegistry, TaskType
from task_contracts.store import ContractError, file_name, render

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
REGENERATE: Final = "make contracts"


def contract_of(task_type: TaskType[Any]) -> dict[str, Any]:
    """The committed contract of one task type."""
    model = task_type.payload
    schema: dict[str, Any] = model.model_json_schema(mode="validation")
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$comment": (
            f"Payload of task type {task_type.name!r} ({model.__module__}.{model.__qualname__}). "
            f"Generated: edit the model, then run `{REGENERATE}`."
        ),
        **schema,
    }


def contract_files(registry: TaskRegistry) -> dict[str, str]:
    """File name -> text for every registered type."""
    names = registry.names()
    folded: dict[str, str] = {}
    for name in names:
        # macOS and Windows checkouts fold case: `Report` and `report` would be one file.
        if (other := folded.setdefault(name.lower(), name)) != name:
            raise ContractError(
                f"task types {other!r} and {name!r} differ only in case; their contract "
                "files would collide on case-insensitive file systems: rename one"
            )
    files = {}
    for name in names:
        task_type = registry.get(name)
        assert task_type is not None
        files[file_name(name)] = render(contract_of(task_type))
    return files


def stack_task_modules(root: Path) -> tuple[str, ...]:
    """Every module any stack's `task_modules` lists, sorted and without duplicates."""
    from plan.errors import PlanError
    from plan.stack_config import available_stacks, load_stack_config

    modules: set[str] = set()
    for stack in available_stacks(root):
        try:
            raw = load_stack_config(stack, root).get(config_key("task_modules"), "[]")
        except PlanError as exc:
            raise ContractError(str(exc)) from exc
        listed = json.loads(raw)
        if not isinstance(listed, list) or not all(isinstance(m, str) for m in listed):
            raise ContractError(
                f"Pulumi.{stack}.yaml: task_modules must be a list of import paths, got {raw}"
            )
        modules.update(listed)
    return tuple(sorted(modules))


def load_worker_registry(root: Path) -> TaskRegistry:
    """The process-wide registry after loading what the worker of any stack loads.

    Call it once per process (`python -m task_contracts export`): importing a
    module registers its types, and a second import registers nothing new.
    """
    from service.task_registry import registry

    if str(root) not in sys.path:
        sys.path.insert(0, str(root))  # task modules live at the repository root
    try:
        load_task_modules(stack_task_modules(root))
    except ConfigError as exc:
        raise ContractError(str(exc)) from exc
    return registry
