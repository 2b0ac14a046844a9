"""`python -m enqueue --help` loads no Cloud Tasks client, gRPC or rich.

Operators run the command in loops and scripts, so its start-up is a feature; its
time is measured with farm-bench against loading the client. What keeps it fast is
what these tests pin: the heavy modules load only once a command runs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests import import_time

HEAVY = ("google.cloud.tasks_v2", "grpc", "rich", "google.api_core")


def imported_modules(*argv: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    return import_time.imported_modules("enqueue", *argv)


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
    assert "google.cloud.tasks_v2" in modules


def test_a_command_skips_aiohttp(tmp_path: Path) -> None:
    # google-api-core would import it (0.1 s) for clients the command never uses;
    # enqueue/__main__.py makes that optional import fail, and the command still works.
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    outputs = tmp_path / "outputs.json"
    outputs.write_text(
        '{"project": "p", "location": "l", "queue": "projects/p/locations/l/queues/q", '
        '"service_url": "https://w.example", "audience": "https://w.example", '
        '"invoker_email": "i@p.iam.gserviceaccount.com", "emulator_host": "127.0.0.1:9"}'
    )
    modules, done = imported_modules("--outputs", str(outputs), "bulk", str(empty))
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.startswith("created 0, already enqueued 0, failed 0 (of 0 in ")
    assert "google.api_core.operations_v1" in modules  # where aiohttp would come from
    assert not any(m.startswith("aiohttp.") for m in modules)
