"""The task types the worker will register, read from source without importing it.

A route (`routes.<type>`) for a type the worker never registers would send every
such task to a 404 on its queue: the program refuses it before any resource. The
worker registers its types when it imports its modules (`service.plugins`): the
built-in `service.handlers` and the stack's `task_modules`. Importing them here
would pull the worker's dependencies (and a team's own) into the Pulumi program,
so the modules are parsed instead: every decorator call `<anything>.task(NAME, ...)`
(`service.registry.task`) whose NAME is a string literal, a module-level string
constant, or a name imported from `contract`, in the module and in the submodules
it imports.

What cannot be read statically (a NAME computed at run time, a module that is
not next to Pulumi.yaml because a prebuilt `image` holds it) makes the result
incomplete: then no route is refused for naming an unknown type, since this
module cannot know. Deliberately not here: the rule that a route names a
registered type (`components.config`).
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass
from pathlib import Path

BUILTIN_TASK_MODULE = "service.handlers"
"""The worker's built-in task types (`service.plugins.BUILTIN_HANDLERS`; a test keeps the two
equal: `components` may not import the worker)."""
REGISTER_METHOD = "task"  # `registry.task(name, payload=...)`, service/task_registry.py


@dataclass(frozen=True)
class DeclaredTypes:
    """Task types found in the modules, and whether the search saw everything."""

    names: frozenset[str]
    unread: tuple[str, ...]
    """Modules, or `module: line N` registrations, whose types could not be read."""

    @property
    def complete(self) -> bool:
        return not self.unread


def module_file(module: str, root: Path) -> Path | None:
    """`a.b` -> root/a/b.py or root/a/b/__init__.py, or None."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def declared_task_types(modules: tuple[str, ...], root: Path) -> DeclaredTypes:
    """The types registered by the built-in module and `modules` (found under `root`)."""
    names: set[str] = set()
    unread: list[str] = []
    seen: set[str] = set()
    for module in (BUILTIN_TASK_MODULE, *modules):
        _scan(module, module, root, names, unread, seen)
    return DeclaredTypes(frozenset(names), tuple(unread))


def _scan(
    module: str, scope: str, root: Path, names: set[str], unread: list[str], seen: set[str]
) -> None:
    if module in seen:
        return
    seen.add(module)
    path = module_file(module, root)
    if path is None:
        unread.append(module)
        return
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError):
        unread.append(module)
        return
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    constants = _string_constants(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                if _is_register_call(decorator):
                    assert isinstance(decorator, ast.Call)
                    name = _string_of(decorator.args[0], constants) if decorator.args else None
                    if name is None:
                        unread.append(f"{module}: line {decorator.lineno}")
                    else:
                        names.add(name)
    # Submodules the module imports register types too (service/handlers/__init__.py
    # imports enrich and smoke); only those inside the configured module are followed.
    for imported in _imports(tree, package):
        inside = imported == scope or imported.startswith(scope + ".")
        # `from p import name` also yields p.name, which is a module only if its file exists.
        if inside and module_file(imported, root) is not None:
            _scan(imported, scope, root, names, unread, seen)


def _is_register_call(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == REGISTER_METHOD
    )


def _string_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level `NAME = "text"` and `from contract.x import NAME` strings."""
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            if isinstance(node.value.value, str):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = node.value.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Constant):
            if isinstance(node.target, ast.Name) and isinstance(node.value.value, str):
                found[node.target.id] = node.value.value
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("contract"):
            # `contract` is standard library only: importing it pulls in nothing else.
            source = importlib.import_module(str(node.module))
            for alias in node.names:
                value = getattr(source, alias.name, None)
                if isinstance(value, str):
                    found[alias.asname or alias.name] = value
    return found


def _string_of(node: ast.expr, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def _imports(tree: ast.Module, package: str) -> list[str]:
    """Absolute names of the modules `tree` imports (`from p import m` may name module p.m)."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            found.append(base)
            found += [f"{base}.{alias.name}" for alias in node.names]
    return found
