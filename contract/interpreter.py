"""How every command names the interpreter it must run with, in hints and errors.

The project's packages live in ``.venv/``; a fresh shell's ``python`` lacks
them. Every entry point (``python -m plan | devstack | enqueue | emulator |
service``, ``scripts/smoke_test.py``) answers a missing package with one line
naming the interpreter to use instead of a traceback, and every hint that
prints a command spells the interpreter so that it runs when pasted. Standard
library only: this must load under the foreign interpreter too.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any, NoReturn


def python_command() -> str:
    """This interpreter as a user should type it in a fresh shell, where no venv is
    active and a bare `python` lacks the packages: `.venv/bin/python` from the
    repository root, the absolute path from anywhere else, `python` in an active venv."""
    executable = Path(sys.executable)
    venv = os.environ.get("VIRTUAL_ENV")
    if venv and executable.parent == Path(venv, "bin"):
        return "python"
    try:
        return str(executable.relative_to(Path.cwd()))
    except ValueError:
        return str(executable)


def foreign_interpreter_message(command: str, exc: ModuleNotFoundError) -> str:
    """The one line an entry point prints when a package is missing from this
    interpreter, e.g. ``command`` = "python -m enqueue" or "scripts/smoke_test.py"."""
    run = command.removeprefix("python ")
    return (
        f"{command.split()[-1]}: {exc} in {sys.executable}; run it with the project's "
        f"interpreter, .venv/bin/python {run} (after `make setup`), or activate .venv first"
    )


def exit_if_foreign(command: str, exc: ModuleNotFoundError, module_name: str) -> NoReturn:
    """In an entry point's top-level imports: print the one line and exit 2 when the
    module runs as the program (``module_name == "__main__"``); re-raise otherwise."""
    if module_name != "__main__":
        raise exc
    print(foreign_interpreter_message(command, exc), file=sys.stderr)
    raise SystemExit(2)


def lazy_exports(
    package: str, homes: Mapping[str, str], namespace: MutableMapping[str, Any]
) -> Callable[[str], object]:
    """A package's ``__getattr__`` (PEP 562) loading each public name from its module
    on first use, so that ``python -m package`` under a foreign interpreter reaches
    the entry point's one-line message instead of failing in ``__init__``."""

    def load(name: str) -> object:
        try:
            module = homes[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return load
