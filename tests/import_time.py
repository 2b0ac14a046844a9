"""Which modules a command loads: `python -X importtime -m MODULE ...` read back, for the
start-up tests of the operators' commands (`--help` must load no client)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(module: str, *argv: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The modules `python -m module argv...` imported, and the finished process."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", module, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    return modules, done
