"""`python -m enqueue --help` loads no Cloud Tasks client, gRPC or rich.

Operators run the command in loops and scripts, so its start-up is a feature; its
time is measured side by side in benchmarks/enqueue_bench.py. What keeps it fast is
what these tests pin: the heavy modules load only once a command runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("google.cloud.tasks_v2", "grpc", "rich", "google.api_core")


def imported_modules(*argv: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "enqueue", *argv],
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


@pytest.mark.parametrize(
    "argv",
    [("--help",), ("--outputs", "o.json", "send", "--help"), ("--stack", "dev", "nonsense")],
)
def test_help_and_usage_errors_load_no_client(argv: tuple[str, ...]) -> None:
    modules, done = imported_modules(*argv)
    assert "enqueue.cli" in modules  # the measurement itself works
    loaded = sorted(m for m in modules if m.startswith(HEAVY))
    assert loaded == [], f"`python -m enqueue {' '.join(argv)}` loaded {loaded[:5]}"
    assert done.returncode in (0, 2)


def test_a_command_that_runs_does_load_the_client(tmp_path: Path) -> None:
    # The other side: the same measurement sees the client when a command needs it.
    missing = tmp_path / "missing.json"
    modules, done = imported_modules("--outputs", str(missing), "send", "smoke")
    assert done.returncode == 2  # no such outputs file
    assert "rich.console" in modules
