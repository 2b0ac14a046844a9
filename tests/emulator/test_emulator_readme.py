"""The Python examples in emulator/README.md run as written (ports substituted)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from emulator.testing import EmulatorProcess

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "emulator" / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_client_example_talks_to_the_emulator_over_both_transports() -> None:
    block = next(b for b in _python_blocks() if "CloudTasksGrpcTransport" in b)
    with EmulatorProcess() as emu:
        code = block.replace("http://127.0.0.1:8124", emu.http_url).replace(
            "127.0.0.1:8123", emu.grpc_host
        )
        scope: dict[str, Any] = {}
        exec(compile(code, str(README), "exec"), scope)  # noqa: S102 - our own README
        parent = "projects/readme/locations/l"
        scope["grpc_client"].create_queue(parent=parent, queue={"name": f"{parent}/queues/a"})
        names = [q.name for q in scope["rest_client"].list_queues(parent=parent)]
        assert names == [f"{parent}/queues/a"]


def test_testing_example_runs(tmp_path: Path) -> None:
    block = next(b for b in _python_blocks() if "EmulatorProcess(" in b)
    scope: dict[str, Any] = {"tmp_path": tmp_path}
    exec(compile(block, str(README), "exec"), scope)  # noqa: S102 - our own README
    assert (tmp_path / "tasks.db").exists()
