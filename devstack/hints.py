"""How to spell a command in a hint so that it runs when pasted as printed."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def python() -> str:
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
