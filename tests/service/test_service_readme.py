"""The README's "Adding a task type" example, run as written in a real worker."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.service.conftest import Worker
from tests.service.support import LocalIssuer, WorkerProcess

README = Path(__file__).resolve().parents[2] / "service" / "README.md"

pytestmark = pytest.mark.integration


def test_readme_task_type_example_works(issuer: LocalIssuer, tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    [example] = [b for b in blocks if b.startswith("# myteam/tasks.py")]
    package = tmp_path / "myteam"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text(example)
    pythonpath = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    process = WorkerProcess.with_auth(
        issuer, env={"TASKS_EXTRA_MODULES": "myteam.tasks", "PYTHONPATH": pythonpath}
    )
    worker = Worker(process=process, record_file=tmp_path / "unused", issuer=issuer)
    try:
        ok = worker.post(
            "resize",
            {"image": "cat.png", "width": 640},
            headers={"X-CloudTasks-TaskRetryCount": "2"},
        )
        assert ok.status_code == 200
        assert ok.json()["result"] == {"image": "cat.png", "width": 640, "attempt": 2}

        gif = worker.post("resize", {"image": "cat.gif", "width": 640})
        assert gif.json() == {
            "status": "dead_letter",
            "reason": "cat.gif: GIFs are not supported",
        }
        too_wide = worker.post("resize", {"image": "cat.png", "width": 99999})
        assert too_wide.status_code == 200
        assert "width: Input should be less than or equal to 4096" in too_wide.json()["reason"]
    finally:
        process.stop()
