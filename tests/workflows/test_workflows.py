"""The GitHub workflows, validated offline.

1. Schema: every workflow against the GitHub workflow JSON schema vendored in
   the check-jsonschema wheel (no network), plus its rule that every job has a
   timeout. A deliberately broken workflow proves the check can fail.
2. Properties a reviewer who runs Pulumi in Actions would look for: least
   permissions, Workload Identity auth, fork safety, one updated PR comment,
   concurrency per stack, the smoke test after every deploy, pinned actions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml"))
STACKS = ("dev", "staging", "prod")


def load(name: str) -> dict[str, Any]:
    # PyYAML reads the `on:` key as the boolean True (YAML 1.1); BaseLoader keeps strings.
    document: dict[str, Any] = yaml.load((WORKFLOWS / name).read_text(), Loader=yaml.BaseLoader)  # noqa: S506
    return document


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = job.get("steps", [])
    return listed


def uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in steps(job) if s.get("uses", "").startswith(f"{action}@")]


def check_schema(schema: str, files: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class TestSchema:
    def test_the_expected_workflows_exist(self) -> None:
        assert [p.name for p in WORKFLOW_FILES] == [
            "deploy-stack.yml",
            "deploy.yml",
            "preview-comment.yml",
            "preview.yml",
        ]

    @pytest.mark.integration
    @pytest.mark.parametrize(
        "schema", ["vendor.github-workflows", "custom.github-workflows-require-timeout"]
    )
    def test_every_workflow_is_valid(self, schema: str) -> None:
        done = check_schema(schema, WORKFLOW_FILES)
        assert done.returncode == 0, done.stdout + done.stderr

    @pytest.mark.integration
    def test_the_schema_check_catches_a_broken_workflow(self, tmp_path: Path) -> None:
        broken = tmp_path / "broken.yml"
        broken.write_text(
            "on: push\njobs:\n  build:\n    runs-on: ubuntu-24.04\n"
            "    timeout-minutes: 5\n    concurrency:\n      cancel-in-progress: maybe\n"
            "    steps:\n      - uses: actions/checkout@v4.2.2\n        run: both is invalid\n"
        )
        done = check_schema("vendor.github-workflows", [broken])
        assert done.returncode == 1
        assert "broken.yml" in done.stdout


class TestPinnedActions:
    def test_every_action_is_pinned_to_an_exact_release_or_commit(self) -> None:
        pattern = re.compile(r"^[\w.-]+/[\w./-]+@(v\d+\.\d+\.\d+|[0-9a-f]{40})$")
        found = []
        for path in WORKFLOW_FILES:
            for job in load(path.name)["jobs"].values():
                for step in steps(job):
                    if "uses" in step:
                        found.append(step["uses"])
                        assert pattern.match(step["uses"]), f"{path.name}: {step['uses']} floats"
        assert len(found) > 10

    def test_checkout_never_keeps_the_token(self) -> None:
        for path in WORKFLOW_FILES:
            for job in load(path.name)["jobs"].values():
                for step in uses(job, "actions/checkout"):
                    assert step["with"]["persist-credentials"] == "false", path.name


class TestPreview:
    def test_runs_on_pull_requests_with_read_only_default_permissions(self) -> None:
        workflow = load("preview.yml")
        assert workflow["name"] == "preview"
        assert "pull_request" in workflow["on"]
        assert "pull_request_target" not in workflow["on"]
        assert workflow["permissions"] == {"contents": "read"}

    def test_lint_and_unit_tests(self) -> None:
        commands = [s.get("run", "") for s in steps(load("preview.yml")["jobs"]["checks"])]
        assert "make lint" in commands
        assert "make test-fast" in commands

    def test_the_plan_diff_of_every_stack_is_an_artifact_without_secrets(self) -> None:
        job = load("preview.yml")["jobs"]["plan-diff"]
        text = yaml.safe_dump(job)
        assert "secrets." not in text
        assert "permissions" not in job  # inherits contents: read
        [_, base] = uses(job, "actions/checkout")
        assert base["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
        assert base["with"]["path"] == ".base"
        script = next(s["run"] for s in steps(job) if s.get("id") == "plan")
        assert 'python -m plan --stack "$stack" --diff' in script
        assert ".base/tests/snapshots/plan-$stack.json" in script
        assert "python -m policy.check --plan" in script
        assert "pr-number" in script
        assert "head-sha" in script
        [upload] = uses(job, "actions/upload-artifact")
        assert upload["with"]["name"] == "plan-diff"
        assert upload["if"] == "always()"

    def test_pulumi_preview_per_stack_with_policy_pack_and_workload_identity(self) -> None:
        job = load("preview.yml")["jobs"]["pulumi-preview"]
        assert job["strategy"]["matrix"]["stack"] == list(STACKS)
        assert job["permissions"] == {
            "contents": "read",
            "id-token": "write",
            "pull-requests": "write",
        }
        [auth] = uses(job, "google-github-actions/auth")
        assert set(auth["with"]) == {"workload_identity_provider", "service_account"}
        [preview] = uses(job, "pulumi/actions")
        assert preview["with"]["command"] == "preview"
        assert preview["with"]["stack-name"] == "${{ matrix.stack }}"
        assert preview["with"]["policyPacks"] == "policy"
        assert preview["with"]["comment-on-pr"] == "true"
        assert preview["with"]["edit-pr-comment"] == "true"
        assert any("policy-venv" in s.get("run", "") for s in steps(job))

    def test_the_cloud_preview_is_skipped_with_a_message_without_secrets(self) -> None:
        job = load("preview.yml")["jobs"]["pulumi-preview"]
        checkout, first = steps(job)[:2]
        assert checkout["uses"].startswith("actions/checkout@")  # no secret, no token kept
        assert str(checkout["with"]["persist-credentials"]).lower() == "false"
        assert first["id"] == "creds"
        assert "head.repo.full_name != github.repository" in first["env"]["FROM_FORK"]
        assert "::notice title=pulumi preview skipped::" in first["run"]
        assert "GITHUB_STEP_SUMMARY" in first["run"]
        # Nothing after the check runs (or sees a secret) unless credentials exist.
        for step in steps(job)[2:]:
            assert step["if"] in (
                "steps.creds.outputs.available == 'true'",
                "always() && steps.creds.outputs.available == 'true'",  # the status comment
            ), step

    def test_previews_read_state_with_their_own_token_never_the_deploy_one(self) -> None:
        job = load("preview.yml")["jobs"]["pulumi-preview"]
        [preview] = uses(job, "pulumi/actions")
        assert preview["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_PREVIEW_ACCESS_TOKEN }}"
        assert "secrets.PULUMI_ACCESS_TOKEN" not in (WORKFLOWS / "preview.yml").read_text()

    def test_previews_use_the_read_only_account_never_the_deployer(self) -> None:
        # Only jobs in the stack's GitHub environment may impersonate the deployer
        # (bootstrap/): a PR's preview could not, and must not try.
        job = load("preview.yml")["jobs"]["pulumi-preview"]
        creds = steps(job)[1]["run"]
        assert "GCP_PREVIEW_SERVICE_ACCOUNT_$suffix" in creds
        assert "GCP_SERVICE_ACCOUNT_" not in creds
        assert "environment" not in job


def test_the_passphrase_reaches_deploys_and_never_a_pull_request() -> None:
    """A self-managed backend defaults to the passphrase secrets provider; the passphrase
    decrypts every stack secret, so only the environment-guarded deploy job gets it."""
    [deploy] = load("deploy-stack.yml")["jobs"].values()
    assert deploy["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    assert "PULUMI_CONFIG_PASSPHRASE }}" not in (WORKFLOWS / "preview.yml").read_text()
    creds = steps(load("preview.yml")["jobs"]["pulumi-preview"])[1]["run"]
    assert "secretsprovider: gcpkms://" in creds  # such stacks are previewed; others skipped


class TestPreviewComment:
    def test_triggered_by_the_preview_workflow_and_never_runs_pr_code(self) -> None:
        workflow = load("preview-comment.yml")
        assert workflow["on"]["workflow_run"]["workflows"] == [load("preview.yml")["name"]]
        assert workflow["on"]["workflow_run"]["types"] == ["completed"]
        assert workflow["permissions"] == {"contents": "read"}
        [job] = workflow["jobs"].values()
        assert "github.event.workflow_run.event == 'pull_request'" in job["if"]
        assert job["permissions"] == {"actions": "read", "pull-requests": "write"}
        assert not uses(job, "actions/checkout")
        assert not any("run" in s for s in steps(job))

    def test_one_comment_found_by_a_marker_is_updated_not_duplicated(self) -> None:
        [job] = load("preview-comment.yml")["jobs"].values()
        [download] = uses(job, "actions/download-artifact")
        assert download["with"]["name"] == "plan-diff"
        assert download["continue-on-error"] == "true"
        assert download["with"]["run-id"] == "${{ github.event.workflow_run.id }}"
        [script_step] = uses(job, "actions/github-script")
        assert script_step["if"] == "steps.download.outcome == 'success'"
        script = script_step["with"]["script"]
        assert "<!-- cloud-tasks-pipeline:plan-diff -->" in script
        assert "updateComment" in script
        assert "createComment" in script
        assert "github-actions[bot]" in script
        # The artifact is untrusted: the number is validated and the head must match.
        assert "^[0-9]{1,10}$" in script
        assert "pr.head.sha !== process.env.HEAD_SHA" in script


@pytest.mark.integration
def test_the_comment_script_is_valid_javascript(tmp_path: Path) -> None:
    # actions/github-script runs the script as the body of an async function with
    # these arguments; node's parser checks it the same way.
    [job] = load("preview-comment.yml")["jobs"].values()
    [script_step] = uses(job, "actions/github-script")
    wrapped = tmp_path / "comment.js"
    wrapped.write_text(
        "(async function (github, context, core, glob, io, exec, require) {\n"
        + script_step["with"]["script"]
        + "\n});\n"
    )
    done = subprocess.run(
        ["node", "--check", str(wrapped)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    wrapped.write_text(wrapped.read_text().replace("const marker", "const const marker"))
    broken = subprocess.run(
        ["node", "--check", str(wrapped)], capture_output=True, text=True, timeout=60, check=False
    )
    assert broken.returncode != 0


def _run_status_script(tmp_path: Path, outcome: str, comments: list[dict[str, Any]]) -> Any:
    """Run the preview-status github-script with node against a recording fake API."""
    job = load("preview.yml")["jobs"]["pulumi-preview"]
    [step] = [s for s in uses(job, "actions/github-script")]
    harness = tmp_path / "status.js"
    harness.write_text(
        "const calls = [];\n"
        f"const existing = {json.dumps(comments)};\n"
        "const github = { paginate: async () => existing, rest: { issues: {\n"
        "  listComments: 'listComments',\n"
        "  createComment: async (a) => calls.push(['create', a]),\n"
        "  updateComment: async (a) => calls.push(['update', a]) } } };\n"
        "const context = { repo: { owner: 'o', repo: 'r' }, serverUrl: 'https://github.com',"
        " runId: 7 };\n"
        "(async function (github, context) {\n"
        + step["with"]["script"]
        + "\n})(github, context).then(() => console.log(JSON.stringify(calls)));\n"
    )
    env = {
        **os.environ,
        "STACK": "prod",
        "OUTCOME": outcome,
        "HEAD_SHA": "abc123",
        "PR_NUMBER": "12",
    }
    done = subprocess.run(
        ["node", str(harness)], capture_output=True, text=True, timeout=60, check=True, env=env
    )
    return json.loads(done.stdout)


def test_a_failed_cloud_preview_says_so_in_one_status_comment(tmp_path: Path) -> None:
    [(verb, created)] = _run_status_script(tmp_path, "failure", [])
    assert verb == "create"
    assert created["issue_number"] == 12
    assert "<!-- cloud-tasks-pipeline:preview-status:prod -->" in created["body"]
    assert "**prod** at abc123: **FAILURE**" in created["body"]
    assert "https://github.com/o/r/actions/runs/7" in created["body"]
    # The next push that passes edits the same comment instead of adding one.
    ours = {"id": 5, "user": {"login": "github-actions[bot]"}, "body": created["body"]}
    theirs = {"id": 6, "user": {"login": "mallory"}, "body": created["body"]}
    [(verb, updated)] = _run_status_script(tmp_path, "success", [theirs, ours])
    assert (verb, updated["comment_id"]) == ("update", 5)
    assert "**prod** at abc123: passed" in updated["body"]


class TestDeploy:
    def test_push_to_main_runs_checks_then_dev_staging_prod_in_order(self) -> None:
        workflow = load("deploy.yml")
        assert workflow["on"]["push"]["branches"] == ["main"]
        assert workflow["permissions"] == {"contents": "read"}
        jobs = workflow["jobs"]
        assert jobs["checks"]["if"] == "github.ref == 'refs/heads/main'"
        assert "make test" in [s.get("run") for s in steps(jobs["checks"])]
        assert jobs["dev"]["needs"] == "checks"
        assert jobs["staging"]["needs"] == "dev"
        assert jobs["prod"]["needs"] == "staging"
        for stack in STACKS:
            job = jobs[stack]
            assert job["uses"] == "./.github/workflows/deploy-stack.yml"
            assert job["with"] == {"stack": stack}
            assert job["permissions"] == {"contents": "read", "id-token": "write"}
            # inherit: the token resolves behind the stack's environment, never shadowed
            # by a declared workflow_call secret passed from this job.
            assert job["secrets"] == "inherit"

    def test_each_stack_deploys_behind_its_environment_one_at_a_time(self) -> None:
        workflow = load("deploy-stack.yml")
        assert "workflow_call" in workflow["on"]
        assert "secrets" not in (workflow["on"]["workflow_call"] or {})
        [job] = workflow["jobs"].values()
        assert job["environment"] == "${{ inputs.stack }}"
        assert job["concurrency"] == {
            "group": "deploy-${{ inputs.stack }}",
            "cancel-in-progress": "false",
        }

    def test_pulumi_up_with_the_policy_pack_then_the_smoke_test(self) -> None:
        [job] = load("deploy-stack.yml")["jobs"].values()
        listed = steps(job)
        [auth] = uses(job, "google-github-actions/auth")
        [up] = uses(job, "pulumi/actions")
        assert up["with"]["command"] == "up"
        assert up["with"]["stack-name"] == "${{ inputs.stack }}"
        assert up["with"]["policyPacks"] == "policy"
        smoke = listed[-1]
        assert smoke["run"] == (
            '.venv/bin/python scripts/smoke_test.py --stack "$STACK" --timeout 600'
        )
        assert smoke["env"]["STACK"] == "${{ inputs.stack }}"
        # Order: authenticate, deploy, then smoke test; no step may swallow a failure.
        assert listed.index(auth) < listed.index(up) < listed.index(smoke)
        assert all("continue-on-error" not in s for s in listed)
        assert "if" not in smoke

    def test_missing_credentials_fail_the_deploy_instead_of_skipping(self) -> None:
        [job] = load("deploy-stack.yml")["jobs"].values()
        first = steps(job)[0]
        assert first["id"] == "creds"
        assert "exit 1" in first["run"]
        assert "available=false" not in first["run"]


def test_no_workflow_interpolates_untrusted_input_into_a_shell() -> None:
    # ${{ }} inside `run:` is pasted into the script before bash sees it; event data
    # there is a script injection. Pass values through `env:` instead.
    for path in WORKFLOW_FILES:
        for job in load(path.name)["jobs"].values():
            for step in steps(job):
                assert "${{" not in step.get("run", ""), f"{path.name}: {step.get('name')}"


@pytest.mark.integration
def test_the_plan_diff_step_diffs_against_the_base_and_flags_policy_violations(
    tmp_path: Path,
) -> None:
    """Run the plan-diff step's own script on a copy of the repository, as the runner
    would after both checkouts: a config change shows up as a diff against the base
    branch's snapshot, a policy violation is flagged, and the snapshots are restored."""
    work = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", ".venv", ".devstack")
    for package in (
        "contract",
        "components",
        "plan",
        "devstack",
        "emulator",
        "enqueue",
        "service",
        "policy",
    ):
        shutil.copytree(ROOT / package, work / package, ignore=ignore)
    shutil.copytree(ROOT / "tests" / "snapshots", work / "tests" / "snapshots")
    shutil.copytree(ROOT / "tests" / "snapshots", work / ".base" / "tests" / "snapshots")
    for path in [ROOT / "__main__.py", *ROOT.glob("Pulumi*.yaml")]:
        shutil.copy(path, work / path.name)
    (work / ".venv").symlink_to(ROOT / ".venv")
    git = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    subprocess.run([*git, "init", "-q"], cwd=work, check=True)
    subprocess.run([*git, "add", "tests/snapshots"], cwd=work, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "base"], cwd=work, check=True)
    # The PR: a harmless dev change and a prod change the policy refuses.
    dev = work / "Pulumi.dev.yaml"
    dev.write_text(
        dev.read_text()
        .replace("max_dispatches_per_second: 5\n", "max_dispatches_per_second: 7\n")
        .replace("expected_tasks_per_day: 1000\n", "expected_tasks_per_day: 200000\n")
    )
    prod = work / "Pulumi.prod.yaml"
    prod.write_text(
        prod.read_text().replace("deletion_protection: true\n", "deletion_protection: false\n")
    )

    job = load("preview.yml")["jobs"]["plan-diff"]
    script = next(s["run"] for s in steps(job) if s.get("id") == "plan")
    output, summary = tmp_path / "output", tmp_path / "summary"
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=work,
        env={
            **os.environ,
            "GITHUB_OUTPUT": str(output),
            "GITHUB_STEP_SUMMARY": str(summary),
            "HEAD_SHA": "0123abc",
            "PR_NUMBER": "42",
        },
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert output.read_text() == "violations=1\n"
    comment = (work / "plan-diff" / "comment.md").read_text()
    assert "inputs.rateLimits.maxDispatchesPerSecond: 5 => 7" in comment
    assert "<b>prod</b> — policy: VIOLATIONS" in comment
    assert "[prod-deletion-protection]" in comment
    # Each stack's cost against the base branch's: the dev volume change costs more,
    # staging changed nothing.
    assert "#### Cost and capacity: dev" in comment
    dev_total = comment.split("#### Cost and capacity: dev", 1)[1].split("\n\n", 2)[1]
    assert "(base branch: USD 0.08, change **+" in dev_total, dev_total
    staging = comment.split("#### Cost and capacity: staging", 1)[1].split("\n\n", 2)[1]
    assert "change **+0.00**" in staging, staging
    assert "| queue | expected | in flight (Little's law) |" in comment
    assert "<b>staging</b> — policy: no violation" in comment
    assert (work / "plan-diff" / "pr-number").read_text() == "42\n"
    assert summary.read_text() == comment
    status = subprocess.run(
        ["git", "status", "--porcelain", "tests/snapshots"],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    )
    assert status.stdout == ""


def test_the_plan_diff_compares_task_contracts_with_the_base_and_only_warns() -> None:
    job = load("preview.yml")["jobs"]["plan-diff"]
    [_, base] = uses(job, "actions/checkout")
    assert base["with"]["sparse-checkout"].split() == ["tests/snapshots", "task_contracts/schemas"]
    names = [s.get("id") or s.get("name") for s in steps(job)]
    # After the plan (it appends to the plan's comment), before the upload.
    assert (
        names.index("plan")
        < names.index("contracts")
        < names.index("Upload the plan diff for the comment workflow")
    )
    step = next(s for s in steps(job) if s.get("id") == "contracts")
    script = step["run"]
    assert "python -m task_contracts export --out plan-diff/task-contracts" in script
    assert '--base "$base" --head plan-diff/task-contracts' in script
    assert "base=.base/task_contracts/schemas" in script
    assert ">> plan-diff/comment.md" in script
    # A breaking change is a warning and an output, never the job's failure (docs/ci.md).
    assert "::warning title=Breaking task contract change::" in script
    assert "exit 1" not in script


@pytest.mark.integration
@pytest.mark.parametrize("base_has_contracts", [True, False])
def test_the_contracts_step_flags_a_breaking_model_change_in_the_comment(
    tmp_path: Path, base_has_contracts: bool
) -> None:
    """Run the contracts step's own script on a copy of the repository whose `enrich`
    model gained a required field: the comment flags it, the job does not fail."""
    work = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", ".venv", ".devstack")
    for package in ("contract", "service", "plan", "task_contracts"):
        shutil.copytree(ROOT / package, work / package, ignore=ignore)
    for path in ROOT.glob("Pulumi*.yaml"):
        shutil.copy(path, work / path.name)
    if base_has_contracts:
        shutil.copytree(ROOT / "task_contracts" / "schemas", work / ".base/task_contracts/schemas")
    (work / ".venv").symlink_to(ROOT / ".venv")
    enrich = work / "service" / "handlers" / "enrich.py"
    enrich.write_text(
        enrich.read_text().replace(
            '    record_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$")\n',
            '    record_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$")\n    tenant: str\n',
        )
    )
    (work / "plan-diff").mkdir()
    (work / "plan-diff" / "comment.md").write_text("### Offline plan diff\n")

    job = load("preview.yml")["jobs"]["plan-diff"]
    script = next(s["run"] for s in steps(job) if s.get("id") == "contracts")
    output, summary = tmp_path / "output", tmp_path / "summary"
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=work,
        env={**os.environ, "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    comment = (work / "plan-diff" / "comment.md").read_text()
    assert comment.startswith("### Offline plan diff\n\n### Task contracts\n")
    assert summary.read_text() == "\n" + comment.split("\n\n", 1)[1]
    if base_has_contracts:
        assert output.read_text() == "breaking=true\n"
        assert "::warning title=Breaking task contract change::" in done.stdout
        assert "| `enrich` | `tenant` | new required field | ⚠️ **breaking**" in comment
    else:
        assert output.read_text() == "breaking=false\n"
        assert "The base branch has no task contracts yet: every type is new." in comment
        assert "Task types new: `enrich`, `smoke`." in comment
