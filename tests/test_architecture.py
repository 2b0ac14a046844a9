"""Each package imports only the packages docs/architecture.md says it may.

The boundaries are what keep the parts separable: the worker image holds
`contract/` and `service/` only, the policy rules load in the policy pack's own
interpreter, and the emulator ships alone. A new import across a boundary fails
here, with the rule it breaks, before it fails in an image or a venv.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> the project packages it may import (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "contract": frozenset(),
    "components": frozenset({"contract"}),
    "emulator": frozenset({"contract"}),
    "enqueue": frozenset({"contract"}),
    "service": frozenset({"contract"}),
    "plan": frozenset({"contract", "components", "policy"}),
    "devstack": frozenset({"contract", "plan", "policy"}),
    "policy": frozenset({"contract", "plan"}),
    "bootstrap": frozenset({"contract", "components", "plan"}),
    # run_sample_suites.py starts the emulator and names its redirect variable.
    "scripts": frozenset({"contract", "enqueue", "emulator"}),
    # Operations commands: the enqueue helper's outputs, queues, clients and enqueuer.
    "ops": frozenset({"contract", "enqueue"}),
    # The exporter loads the worker's task modules and reads the stacks' task_modules.
    "task_contracts": frozenset({"contract", "service", "plan"}),
}
PROJECT_PACKAGES = frozenset(ALLOWED) | {"tests", "benchmarks"}

# Modules that must load with the standard library and `contract` alone.
STDLIB_ONLY: dict[str, frozenset[str]] = {
    "contract": frozenset(),  # imported by every part, the worker image included
    "policy/rules.py": frozenset({"contract"}),  # loads in policy/.venv (protobuf 5)
    # The PR comment's comparison needs no pydantic: it reads JSON.
    "task_contracts/compat.py": frozenset({"contract"}),
}


def _imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _files(target: str) -> list[Path]:
    path = ROOT / target
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.py") if ".venv" not in p.parts)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package: str) -> None:
    assert (ROOT / package).is_dir(), f"{package}/ is listed in ALLOWED but does not exist"
    crossings = []
    for path in _files(package):
        for name in _imports(path) & PROJECT_PACKAGES:
            if name != package and name not in ALLOWED[package]:
                crossings.append(f"{path.relative_to(ROOT)} imports {name}")
    allowed = sorted(ALLOWED[package])
    assert not crossings, f"{package} may import only {allowed}: " + "; ".join(crossings)


@pytest.mark.parametrize("target", sorted(STDLIB_ONLY))
def test_standard_library_only(target: str) -> None:
    allowed = STDLIB_ONLY[target] | {target.split("/")[0].removesuffix(".py")}
    outside = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _files(target)
        for name in _imports(path)
        if name not in sys.stdlib_module_names and name not in allowed and name != "__future__"
    }
    assert not outside, f"{target} must need only the standard library and {sorted(allowed)}"


def test_every_source_package_is_governed() -> None:
    """A new top-level package gets a rule here (and a row in docs/architecture.md)."""
    packages = {
        p.name
        for p in ROOT.iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and not p.name.startswith(".")
    }
    assert packages - set(ALLOWED) <= {"tests", "benchmarks"}, packages - set(ALLOWED)


def test_architecture_doc_names_every_package() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [p for p in ALLOWED if f"`{p}/`" not in doc]
    assert not missing, f"docs/architecture.md does not describe {missing}"


def test_docs_architecture_names_every_module() -> None:
    """docs/architecture.md's layout lists every module, so a reader finds each one."""
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")

    def named(path: Path, package: str) -> bool:
        spellings = {path.name, path.relative_to(ROOT / package).as_posix()}
        spellings.add(path.relative_to(ROOT).as_posix())
        return any(f"`{spelling}`" in doc for spelling in spellings)

    missing = [
        str(path.relative_to(ROOT))
        for package in sorted(ALLOWED)
        for path in _files(package)
        if path.name != "__init__.py" and not named(path, package)
    ]
    assert not missing, f"docs/architecture.md does not name: {missing}"
