"""The README's "Adding a task type" example, run as written in a worker app."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from service import registry
from tests.service.conftest import app_worker
from tests.service.support import LocalIssuer

README = Path(__file__).resolve().parents[2] / "service" / "README.md"


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The example registers into `service.registry`; undo that (and its import) after."""
    monkeypatch.setattr(registry, "_types", dict(registry._types))
    yield
    for name in [m for m in sys.modules if m == "myteam" or m.startswith("myteam.")]:
        del sys.modules[name]


@pytest.mark.usefixtures("isolated_registry")
def test_readme_task_type_example_works(
    issuer: LocalIssuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    [example] = [b for b in blocks if b.startswith("# myteam/tasks.py")]
    package = tmp_path / "myteam"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text(example)
    monkeypatch.syspath_prepend(str(tmp_path))  # PYTHONPATH, as in a team's image
    with app_worker(tmp_path, issuer, {"TASKS_EXTRA_MODULES": "myteam.tasks"}) as worker:
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
