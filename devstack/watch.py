"""Which handler files changed since the worker started: the trigger of `up --reload`.

The watched trees are `service/` (the worker and its built-in handlers) and the
directory of every module the plan's worker loads through `TASKS_EXTRA_MODULES`
(your own task types). Polling modification times every half second costs a
few milliseconds for a tree of this size and needs no extra dependency or OS
notification API. Deliberately not here: restarting anything
(`devstack.runtime.restart_worker` does).
"""

from __future__ import annotations

import importlib.machinery
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from contract.names import WORKER_ENV_EXTRA_MODULES

SERVICE_DIR = Path(__file__).resolve().parents[1] / "service"


def module_dirs(worker_env: Mapping[str, str], cwd: Path) -> list[Path]:
    """The directories of the extra task modules the worker loads, found (not imported)
    where the worker finds them: its PYTHONPATH, then its working directory."""
    search = [p for p in worker_env.get("PYTHONPATH", "").split(os.pathsep) if p] + [str(cwd)]
    dirs: list[Path] = []
    for name in worker_env.get(WORKER_ENV_EXTRA_MODULES, "").split(","):
        top = name.strip().split(".")[0]
        spec = importlib.machinery.PathFinder.find_spec(top, search) if top else None
        if spec is None:
            continue
        if spec.submodule_search_locations:  # a package, with or without __init__.py
            dirs.extend(Path(location) for location in spec.submodule_search_locations)
        elif spec.origin:  # a single-file module
            dirs.append(Path(spec.origin).parent)
    return dirs


class SourceWatch:
    """Modification times of the *.py files under some directories, compared on demand."""

    def __init__(self, roots: Iterable[Path]) -> None:
        self.roots = sorted({root.resolve() for root in roots})
        self._seen = self._scan()

    def _scan(self) -> dict[Path, int]:
        seen = {}
        for root in self.roots:
            for path in root.rglob("*.py"):
                try:
                    seen[path] = path.stat().st_mtime_ns
                except FileNotFoundError:
                    continue  # removed while we looked
        return seen

    def changed(self) -> list[Path]:
        """Files added, removed or modified since the last call (or since creation)."""
        now = self._scan()
        changed = [p for p in now.keys() | self._seen.keys() if now.get(p) != self._seen.get(p)]
        self._seen = now
        return sorted(changed)
