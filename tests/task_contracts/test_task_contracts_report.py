"""`python -m task_contracts diff`: the PR comment's "Task contracts" section."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from task_contracts import cli
from task_contracts.compat import compare_contracts
from task_contracts.report import BREAKING_FLAG, HEADING, render_markdown
from task_contracts.store import CONTRACTS_DIR, REPO_ROOT, read_contracts, render


class EnrichV1(BaseModel):
    model_config = ConfigDict(title="EnrichPayload", extra="forbid")
    record_id: str


class EnrichV2(BaseModel):
    """A new required field: breaking."""

    model_config = ConfigDict(title="EnrichPayload", extra="forbid")
    record_id: str
    tenant: str


class EnrichV3(BaseModel):
    """A new optional field: compatible."""

    model_config = ConfigDict(title="EnrichPayload", extra="forbid")
    record_id: str
    tenant: str = "default"


class Odd(BaseModel):
    code: str = Field(pattern=r"^(a|b)$")


def write(directory: Path, **models: type[BaseModel]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, model in models.items():
        (directory / f"{name}.schema.json").write_text(render(model.model_json_schema()))
    return directory


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["diff", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_breaking_change_is_flagged_first_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = write(tmp_path / "base", enrich=EnrichV1, gone=EnrichV1)
    head = write(tmp_path / "head", enrich=EnrichV2, fresh=EnrichV1)
    code, out, err = run(capsys, "--base", str(base), "--head", str(head))
    assert code == 0, err
    assert out.startswith(HEADING + "\n")
    assert f"{BREAKING_FLAG}: 2 breaking change(s) in `enrich`, `gone`" in out
    assert "Task types new: `fresh`; removed: `gone`; changed: `enrich`." in out
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `enrich` | `tenant` | new required field | ⚠️ **breaking**:")
    assert "tasks already queued (scheduled up to 30 days ahead) lack `tenant`" in rows[0]
    assert rows[1].startswith("| `gone` | `(payload)` | task type removed | ⚠️ **breaking**")
    assert rows[2] == "| `fresh` | `(payload)` | new task type | nothing queued can have it |"


def test_fail_on_breaking_exits_3_and_still_prints_the_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = write(tmp_path / "base", enrich=EnrichV1)
    head = write(tmp_path / "head", enrich=EnrichV2)
    code, out, err = run(capsys, "--base", str(base), "--head", str(head), "--fail-on-breaking")
    assert code == cli.EXIT_BREAKING == 3
    assert BREAKING_FLAG in out
    assert err == "1 breaking task contract change(s)\n"


def test_a_compatible_change_is_listed_and_not_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = write(tmp_path / "base", enrich=EnrichV1)
    head = write(tmp_path / "head", enrich=EnrichV3)
    code, out, _ = run(capsys, "--base", str(base), "--head", str(head), "--fail-on-breaking")
    assert code == 0
    assert "No breaking change: every task already queued stays valid." in out
    assert '| `enrich` | `tenant` | new optional field (default "default") |' in out
    assert BREAKING_FLAG not in out


def test_no_change_says_so_and_names_the_types(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "--base", str(REPO_ROOT / CONTRACTS_DIR), "--head", str(REPO_ROOT / CONTRACTS_DIR)
    )
    assert code == 0
    assert out.endswith("No task contract changed (task types: `enrich`, `smoke`).\n")


def test_a_base_without_contracts_makes_every_type_new(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "base").mkdir()
    code, out, _ = run(
        capsys, "--base", str(tmp_path / "base"), "--head", str(REPO_ROOT / CONTRACTS_DIR)
    )
    assert code == 0
    assert "The base branch has no task contracts yet: every type is new." in out
    assert "Task types new: `enrich`, `smoke`." in out


def test_table_cells_escape_pipes(tmp_path: Path) -> None:
    class Plain(BaseModel):
        code: str

    base = {"odd": Plain.model_json_schema()}
    text = render_markdown(compare_contracts(base, {"odd": Odd.model_json_schema()}))
    [row] = [line for line in text.splitlines() if line.startswith("| `odd`")]
    assert r"'^(a\|b)$'" in row
    assert row.count(" | ") == 3  # four cells, whatever the pattern holds


def test_an_unusable_directory_is_one_line_on_stderr_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "--base", str(tmp_path / "absent"), "--head", str(REPO_ROOT / CONTRACTS_DIR)
    )
    assert (code, out) == (1, "")
    assert err.startswith("error: ")
    assert "is not a directory of task contracts" in err
    assert len(err.strip().splitlines()) == 1


def test_the_committed_contracts_compare_equal_with_themselves() -> None:
    contracts = read_contracts(REPO_ROOT / CONTRACTS_DIR)
    assert compare_contracts(contracts, contracts).changes == ()
