"""The committed task contracts on disk: one `<type>.schema.json` per task type.

Files are written byte-for-byte deterministic (sorted keys, two-space indent,
one trailing newline), so regenerating them changes nothing unless a model did,
and a stale file (a type that no longer exists) is removed rather than left to
mislead. Deliberately no schema logic: `task_contracts.export` makes the texts,
`task_contracts.compat` compares them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
CONTRACTS_DIR: Final = Path("task_contracts") / "schemas"
"""Where the committed contracts live, relative to the repository root."""
SUFFIX: Final = ".schema.json"


class ContractError(Exception):
    """A contract directory or file that cannot be used; the message says how to fix it."""


def file_name(task_type: str) -> str:
    return f"{task_type}{SUFFIX}"


def render(schema: Mapping[str, Any]) -> str:
    """The one text form of a schema: what is committed and what is compared."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def read_contracts(directory: Path) -> dict[str, dict[str, Any]]:
    """Task type -> schema for every `<type>.schema.json` in `directory`."""
    if not directory.is_dir():
        raise ContractError(
            f"{directory} is not a directory of task contracts; "
            "write one with `python -m task_contracts export --out DIR`"
        )
    contracts: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ContractError(
                f"{path} is not readable JSON ({exc}); regenerate it with `make contracts`"
            ) from exc
        if not isinstance(schema, dict):
            raise ContractError(f"{path} holds no JSON Schema object; regenerate it")
        contracts[path.name.removesuffix(SUFFIX)] = schema
    return contracts


def out_of_date(files: Mapping[str, str], directory: Path) -> list[str]:
    """File names that differ from `files` (name -> text): changed, missing or stale."""
    present = {p.name for p in directory.glob(f"*{SUFFIX}")} if directory.is_dir() else set()
    differ = [
        name
        for name, text in files.items()
        if name not in present or (directory / name).read_text(encoding="utf-8") != text
    ]
    return sorted(differ + [name for name in present if name not in files])


def write_contracts(files: Mapping[str, str], directory: Path) -> dict[str, str]:
    """Make `directory` hold exactly `files`; file name -> `written`, `unchanged` or `removed`."""
    directory.mkdir(parents=True, exist_ok=True)
    stale = set(out_of_date(files, directory))
    outcome: dict[str, str] = {}
    for name, text in sorted(files.items()):
        if name in stale:
            (directory / name).write_text(text, encoding="utf-8")
        outcome[name] = "written" if name in stale else "unchanged"
    for name in sorted(stale - set(files)):
        (directory / name).unlink()
        outcome[name] = "removed"
    return outcome
