"""`python -m ops --help` (and usage errors) load no Cloud Tasks or Cloud Storage client,
gRPC or rich: operators run the command in loops and scripts (issue 15, item 5)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests import import_time

HEAVY = ("google.cloud.tasks_v2", "grpc", "google.cloud.storage", "rich", "google.api_core")


def imported_modules(*argv: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    return import_time.imported_modules("ops", *argv)


@pytest.mark.parametrize(
    "argv",
    [
        ("--help",),
        ("--outputs", "o.json", "dead-letters", "replay", "--help"),
        ("--outputs", "o.json", "tasks", "list", "--help"),
        ("--stack", "dev", "nonsense"),
        ("--outputs", "o.json", "dead-letters", "replay"),  # no selection: usage error
    ],
)
def test_help_and_usage_errors_load_no_client(argv: tuple[str, ...]) -> None:
    modules, done = imported_modules(*argv)
    assert "ops.cli" in modules  # the measurement itself works
    loaded = sorted(m for m in modules if m.startswith(HEAVY))
    assert loaded == [], f"`python -m ops {' '.join(argv)}` loaded {loaded[:5]}"
    assert done.returncode in (0, 2)


def test_a_command_that_runs_does_load_the_client(tmp_path: Path) -> None:
    # The other side: the same measurement sees the client once a command needs it.
    outputs = tmp_path / "o.json"
    outputs.write_text(
        '{"project": "p", "location": "l", "queue": "projects/p/locations/l/queues/q", '
        '"service_url": "https://w.example", "audience": "a", "invoker_email": "i@p.iam.x", '
        '"emulator_host": "127.0.0.1:9"}'
    )
    modules, done = imported_modules("--outputs", str(outputs), "tasks", "list", "--queue", "x")
    assert done.returncode == 2, done.stderr[-500:]
    assert "google.cloud.tasks_v2" in modules
