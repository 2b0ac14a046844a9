"""`python -m plan` and `python -m plan snapshot`, called through `plan.cli.main`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from plan import cli
from plan.diagrams import plan_diagrams
from plan.engine import evaluate
from plan.model import Plan
from plan.render import render_mermaid
from plan.stack_config import REPO_ROOT, available_stacks
from tests.stack_files import STACK_FILES, THREE_QUEUES


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_json_is_the_plan(
    capsys: pytest.CaptureFixture[str], all_plans: dict[str, Plan]
) -> None:
    code, out, _ = run(capsys, "--stack", "prod", "--format", "json")
    assert code == 0
    assert Plan.from_json(json.loads(out)) == all_plans["prod"]


def test_plan_defaults_to_dev_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys)
    assert code == 0
    assert out.startswith("Plan of stack dev (cloud-tasks-pipeline)")


def test_plan_mermaid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--stack", "staging", "--format", "mermaid")
    assert code == 0
    assert out.startswith("flowchart LR")


def test_snapshot_then_diff_after_a_config_change(
    capsys: pytest.CaptureFixture[str], project_copy: Path
) -> None:
    code, out, _ = run(capsys, "snapshot", "--all", "--root", str(project_copy))
    assert code == 0
    assert re.search(r"tests/snapshots/plan-dev.json: \d+ resources \(new\)", out)
    assert sorted(p.name for p in (project_copy / "tests/snapshots").iterdir()) == [
        "plan-dev.json",
        "plan-prod.json",
        "plan-staging.json",
    ]
    stack_file = project_copy / "Pulumi.dev.yaml"
    stack_file.write_text(
        stack_file.read_text().replace(
            "max_dispatches_per_second: 5", "max_dispatches_per_second: 8"
        )
    )
    code, out, _ = run(capsys, "--diff", "--root", str(project_copy))
    assert code == 0  # a difference is not an error
    assert "~ gcp:cloudtasks/queue:Queue  tasks-queue-queue" in out
    assert "inputs.rateLimits.maxDispatchesPerSecond: 5 => 8" in out
    code, out, _ = run(capsys, "--diff", "--format", "json", "--root", str(project_copy))
    changes = json.loads(out)["modified"][0]["changes"]
    assert changes == [{"path": "inputs.rateLimits.maxDispatchesPerSecond", "old": 5, "new": 8}]
    code, out, _ = run(capsys, "snapshot", "--stack", "dev", "--root", str(project_copy))
    assert re.search(r"plan-dev.json: \d+ resources \(\+0 ~1 -0\)", out)


def test_bad_config_exits_1_naming_the_key(
    capsys: pytest.CaptureFixture[str], project_copy: Path
) -> None:
    stack_file = project_copy / "Pulumi.dev.yaml"
    stack_file.write_text(stack_file.read_text().replace("memory: 512Mi", "memory: 512MB"))
    code, out, err = run(capsys, "--root", str(project_copy))
    assert code == 1
    assert out == ""
    assert "error: invalid stack config cloud-tasks-pipeline:memory = '512MB'" in err


def test_diff_without_a_snapshot_says_how_to_make_one(
    capsys: pytest.CaptureFixture[str], project_copy: Path
) -> None:
    code, _, err = run(capsys, "--diff", "--root", str(project_copy))
    assert code == 1
    assert "python -m plan snapshot --stack dev" in err


def test_unknown_stack_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--stack", "qa")
    assert code == 1
    assert "known stacks: dev, prod, staging" in err


@pytest.mark.integration
def test_python_m_plan_in_a_fresh_process() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "plan", "--stack", "dev", "--format", "json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outputs"]["location"] == "europe-west1"


def test_devstack_plan_says_where_the_plan_moved(capsys: pytest.CaptureFixture[str]) -> None:
    from devstack.__main__ import main as devstack_main

    assert devstack_main(["plan", "--stack", "dev"]) == 2
    assert "python -m plan" in capsys.readouterr().err


def test_one_command_brings_every_generated_artefact_in_line_with_your_project(
    capsys: pytest.CaptureFixture[str], project_copy: Path
) -> None:
    """The first deploy step sets your own project id; `make snapshots` then brings
    the snapshots and the README's diagram in line, and nothing else is needed."""
    shutil.copy(REPO_ROOT / "README.md", project_copy / "README.md")
    shutil.copytree(REPO_ROOT / "tests" / "snapshots", project_copy / "tests" / "snapshots")
    for stack_file in project_copy.glob("Pulumi.*.yaml"):
        text = stack_file.read_text()
        stack_file.write_text(re.sub(r"gcp:project: \S+", "gcp:project: acme-queues-42", text))
    code, out, _ = run(capsys, "snapshot", "--all", "--root", str(project_copy))
    assert code == 0
    assert "README.md: plan diagram of stack dev redrawn" in out
    for stack in available_stacks(project_copy):
        code, out, _ = run(capsys, "--stack", stack, "--diff", "--root", str(project_copy))
        assert "matches the committed snapshot" in out
    readme = (project_copy / "README.md").read_text()
    [diagram] = plan_diagrams(readme)
    assert diagram == render_mermaid(evaluate("dev", project_copy))
    assert "tasks-invoker@acme-queues-42.iam.gserviceaccount.com" in diagram
    assert "my-tasks-dev" not in diagram


def test_several_queues_every_queue_its_routes_and_the_capacity_warning(
    capsys: pytest.CaptureFixture[str], project_copy: Path
) -> None:
    """A three-queue stack file in the project: the text lists each queue with its
    settings and routes, stderr the capacity warning with its numbers."""
    source = STACK_FILES / f"Pulumi.{THREE_QUEUES}.yaml"
    text = source.read_text().replace(
        "max_concurrent_dispatches: 2\n", "max_concurrent_dispatches: 500\n"
    )
    (project_copy / f"Pulumi.{THREE_QUEUES}.yaml").write_text(text)
    code, out, err = run(capsys, "--stack", THREE_QUEUES, "--root", str(project_copy))
    assert code == 0, err
    assert "Queues and routes (a type without a route goes to default):" in out
    assert "email  : 2/s, 4 concurrent, 3 attempts, RUNNING, task-level target, " in out
    assert "deadline 30s; routes: enrich, record" in out
    assert "reports: 1/s, 500 concurrent, 50 attempts" in out
    assert "routes: record_sync" in out
    assert "warning: the queues may hold 514 attempts in flight" in err
    assert "the service takes 80 at once" in err
    assert "policy: no violation" in err
