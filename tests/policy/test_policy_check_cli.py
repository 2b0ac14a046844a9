"""`python -m policy.check`: the pack's rules over a saved plan, as the PR workflow runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policy.check import main
from tests.policy.policy_plans import ROOT, SNAPSHOTS, load_plan


def test_every_stack_snapshot_passes(capsys: pytest.CaptureFixture[str]) -> None:
    for stack in ("dev", "staging", "prod"):
        assert main(["--plan", str(SNAPSHOTS / f"plan-{stack}.json"), "--root", str(ROOT)]) == 0
        assert f"stack {stack}: no policy violation" in capsys.readouterr().out


def test_a_violation_exits_1_naming_the_rule_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = load_plan("prod")
    for resource in plan["resources"]:
        if resource["type"] == "gcp:cloudtasks/queue:Queue":
            resource["inputs"]["retryConfig"]["maxAttempts"] = -1
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    assert main(["--plan", str(path), "--root", str(ROOT)]) == 1
    out = capsys.readouterr().out
    assert "[queue-bounded-retries]" in out
    assert "Set max_attempts to a positive number" in out
    assert "1 policy violation(s) in stack prod" in out


def test_the_configured_deadline_is_used(tmp_path: Path) -> None:
    # prod's request timeout is 1200s: a 1201s deadline must fail, the configured 900s pass.
    path = SNAPSHOTS / "plan-prod.json"
    assert main(["--plan", str(path), "--root", str(ROOT)]) == 0
    assert main(["--plan", str(path), "--dispatch-deadline", "1201s"]) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "cannot check"),
        ("[1, 2]", "a plan is a JSON object"),
        ('{"resources": []}', "pass --stack S"),
        ('{"stack": "dev"}', "python -m plan"),
    ],
)
def test_bad_input_exits_2_saying_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "plan.json"
    path.write_text(content)
    assert main(["--plan", str(path)]) == 2
    assert message in capsys.readouterr().err
