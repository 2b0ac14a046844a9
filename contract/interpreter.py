"""How every command names the interpreter it must run with, in hints and errors.

The project's packages live in ``.venv/``; a fresh shell's ``python`` lacks
them. Every entry point (``python -m plan | devstack | enqueue | emulator |
service``, ``scripts/smoke_test.py``) answers a missing package with one line
naming the interpreter to use instead of a traceback, and every hint that
prints a command spells the interpreter so that it runs when pasted. Standard
library only: this must load under the foreign interpreter too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


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
