"""The committed contracts: exported from the worker's task types, deterministic, and
held to the payload models (a model changed without `make contracts` fails here).

`export` runs as a process, as `make contracts` runs it: importing a task module
registers into the process-wide registry, which other tests in this process fill
with their own types.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from service.context import TaskContext
from service.task_registry import TaskRegistry
from task_contracts.compat import compare_schemas
from task_contracts.export import JSON_SCHEMA_DIALECT, contract_files, stack_task_modules
from task_contracts.store import (
    CONTRACTS_DIR,
    REPO_ROOT,
    ContractError,
    out_of_date,
    read_contracts,
    render,
    write_contracts,
)


def export(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "task_contracts", "export", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Resize(BaseModel):
    image: str
    width: int = 100


def registry_with(*names: str) -> TaskRegistry:
    registry = TaskRegistry()
    for name in names:

        @registry.task(name, payload=Resize)
        def handler(payload: Resize, ctx: TaskContext) -> None:
            return None

    return registry


# --- the committed directory -------------------------------------------------------------


def test_the_committed_contracts_match_the_payload_models() -> None:
    done = export("--check")
    assert done.returncode == 0, done.stderr
    assert sorted(read_contracts(REPO_ROOT / CONTRACTS_DIR)) == ["enrich", "smoke"]


def test_a_contract_that_differs_from_its_model_fails_the_check_saying_what_to_run(
    tmp_path: Path,
) -> None:
    out = tmp_path / "schemas"
    shutil.copytree(REPO_ROOT / CONTRACTS_DIR, out)
    smoke = out / "smoke.schema.json"
    smoke.write_text(smoke.read_text().replace('"maximum": 60', '"maximum": 61'))
    (out / "gone.schema.json").write_text("{}\n")
    done = export("--check", "--out", str(out))
    assert done.returncode == 1
    assert "gone.schema.json, smoke.schema.json" in done.stderr
    assert "run `make contracts` and commit the result" in done.stderr
    assert "\n" not in done.stderr.strip()


def test_export_rewrites_changed_files_removes_stale_ones_and_is_stable(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    first = export("--out", str(out))
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in out.iterdir()) == ["enrich.schema.json", "smoke.schema.json"]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "smoke.schema.json").write_text("{}\n")
    (out / "gone.schema.json").write_text("{}\n")
    again = export("--out", str(out))
    assert again.returncode == 0, again.stderr
    assert f"{out / 'smoke.schema.json'}: written" in again.stdout
    assert f"{out / 'enrich.schema.json'}: unchanged" in again.stdout
    assert f"{out / 'gone.schema.json'}: removed" in again.stdout
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert before == {
        p.name: p.read_bytes() for p in (REPO_ROOT / CONTRACTS_DIR).glob("*.schema.json")
    }


def test_the_types_of_every_stacks_task_modules_are_exported(tmp_path: Path) -> None:
    """A team's own module, listed in one stack's task_modules, gets its contract."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(REPO_ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    for stack in ("dev", "prod"):
        shutil.copy(REPO_ROOT / f"Pulumi.{stack}.yaml", root / f"Pulumi.{stack}.yaml")
    prod = root / "Pulumi.prod.yaml"
    prod.write_text(prod.read_text() + "  cloud-tasks-pipeline:task_modules: [myteam.reports]\n")
    (root / "myteam").mkdir()
    (root / "myteam" / "__init__.py").write_text("")
    (root / "myteam" / "reports.py").write_text(
        "from pydantic import BaseModel\n"
        "from service import registry\n\n"
        "class ReportPayload(BaseModel):\n"
        "    report_id: int\n\n"
        "@registry.task('report', payload=ReportPayload)\n"
        "def report(payload, ctx):\n"
        "    return None\n"
    )
    assert stack_task_modules(root) == ("myteam.reports",)
    out = tmp_path / "out"
    done = export("--root", str(root), "--out", str(out))
    assert done.returncode == 0, done.stderr
    contracts = read_contracts(out)
    assert sorted(contracts) == ["enrich", "report", "smoke"]
    assert contracts["report"]["required"] == ["report_id"]
    assert "myteam.reports.ReportPayload" in contracts["report"]["$comment"]


def test_a_task_module_that_does_not_load_is_one_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(REPO_ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    dev = root / "Pulumi.dev.yaml"
    shutil.copy(REPO_ROOT / "Pulumi.dev.yaml", dev)
    dev.write_text(dev.read_text() + "  cloud-tasks-pipeline:task_modules: [nosuch.tasks]\n")
    done = export("--root", str(root), "--out", str(tmp_path / "out"))
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot import task module 'nosuch.tasks'")
    assert len(done.stderr.strip().splitlines()) == 1


# --- one contract ------------------------------------------------------------------------


def test_a_contract_is_the_models_validation_schema_with_dialect_and_provenance() -> None:
    files = contract_files(registry_with("resize"))
    assert list(files) == ["resize.schema.json"]
    contract = json.loads(files["resize.schema.json"])
    assert contract["$schema"] == JSON_SCHEMA_DIALECT
    assert "Resize" in contract["$comment"]
    assert "make contracts" in contract["$comment"]
    without = {k: v for k, v in contract.items() if k not in ("$schema", "$comment")}
    assert without == Resize.model_json_schema()


def test_the_text_is_deterministic_sorted_and_ends_with_one_newline() -> None:
    text = contract_files(registry_with("resize"))["resize.schema.json"]
    assert text == contract_files(registry_with("resize"))["resize.schema.json"]
    assert text.endswith("}\n")
    assert not text.endswith("\n\n")
    assert text == render(json.loads(text))
    keys = list(json.loads(text))
    assert keys == sorted(keys)


def test_types_differing_only_in_case_are_refused() -> None:
    with pytest.raises(ContractError, match="differ only in case"):
        contract_files(registry_with("Report", "report"))


# --- the directory -----------------------------------------------------------------------


def test_out_of_date_names_changed_missing_and_stale_files(tmp_path: Path) -> None:
    files = {"a.schema.json": "{}\n", "b.schema.json": "{}\n", "c.schema.json": "{}\n"}
    write_contracts(files, tmp_path)
    assert out_of_date(files, tmp_path) == []
    (tmp_path / "a.schema.json").write_text('{"x": 1}\n')
    (tmp_path / "b.schema.json").unlink()
    (tmp_path / "d.schema.json").write_text("{}\n")
    assert out_of_date(files, tmp_path) == ["a.schema.json", "b.schema.json", "d.schema.json"]
    assert out_of_date(files, tmp_path / "absent") == sorted(files)


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "is not readable JSON"), ("[1, 2]", "holds no JSON Schema object")],
)
def test_an_unreadable_contract_file_is_a_clear_error(
    tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "bad.schema.json").write_text(content)
    with pytest.raises(ContractError, match=message):
        read_contracts(tmp_path)


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="is not a directory of task contracts"):
        read_contracts(tmp_path / "absent")


def test_provenance_and_dialect_are_never_a_contract_change() -> None:
    class Moved(BaseModel):
        """Resize's payload, moved to another module."""

        image: str
        width: int = 100

    before = json.loads(contract_files(registry_with("resize"))["resize.schema.json"])
    registry = TaskRegistry()

    @registry.task("resize", payload=Moved)
    def handler(payload: Moved, ctx: TaskContext) -> None:
        return None

    after = json.loads(contract_files(registry)["resize.schema.json"])
    assert before["$comment"] != after["$comment"]
    [change] = compare_schemas("resize", before, after)
    assert (change.what, change.breaking) == ("documentation only", False)


def test_make_contracts_exports_and_make_snapshots_runs_it() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "\t$(PY) -m task_contracts export\n" in makefile
    [snapshots] = [line for line in makefile.splitlines() if line.startswith("snapshots:")]
    assert " contracts " in snapshots
