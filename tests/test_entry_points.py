"""Every command run with an interpreter that lacks the project's packages (a fresh
shell's `python`) says so in one line naming the right one: never a traceback."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

COMMANDS = [
    ["-m", "plan", "--stack", "dev"],
    ["-m", "devstack", "status"],
    # `--help` needs the standard library only (test_enqueue_startup); a command does not.
    ["-m", "enqueue", "--outputs", "outputs.json", "send", "smoke"],
    ["-m", "ops", "--outputs", "outputs.json", "tasks", "list"],  # likewise (test_ops_startup)
    ["-m", "emulator", "--help"],
    ["-m", "service"],
    ["scripts/smoke_test.py", "--stack", "dev"],
]


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python with the standard library only, as a fresh shell's `python` is."""
    where = tmp_path_factory.mktemp("bare") / "venv"
    venv.EnvBuilder(with_pip=False).create(where)
    return where / "bin" / "python"


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: " ".join(argv[:2]))
def test_a_foreign_interpreter_gets_one_line_naming_the_right_one(
    bare_python: Path, argv: list[str]
) -> None:
    done = subprocess.run(
        [str(bare_python), *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "No module named" in line
    assert ".venv/bin/python" in line
    assert "make setup" in line
