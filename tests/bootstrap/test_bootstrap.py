"""The bootstrap program, evaluated offline under Pulumi mocks.

Each evaluation runs in its own process (bootstrap_under_mocks.py): Pulumi's
mock runtime is global, and the main program's tests use it in this process.
The deployer's roles are checked against a literal list here (a change to
them must be deliberate) and against every resource type in every stack's
plan (tests/snapshots/plan-<stack>.json), so they are exactly enough.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bootstrap.deployer import (
    DEPLOYER_ROLES,
    GRANTABLE_PROJECT_ROLES,
    PREVIEWER_ROLES,
    PROJECT_IAM_ADMIN,
    ROLE_FOR_TYPE,
    BootstrapConfig,
    BootstrapConfigError,
)

ROOT = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).parent / "bootstrap_under_mocks.py"
REPO = "my-org/cloud-tasks-pipeline"
PROJECT = "my-tasks-dev"
POOL = "projects/123456789012/locations/global/workloadIdentityPools/github"
DEPLOYER_EMAIL = f"pulumi-deployer@{PROJECT}.iam.gserviceaccount.com"
PREVIEWER_EMAIL = f"pulumi-previewer@{PROJECT}.iam.gserviceaccount.com"

EXPECTED_ROLES = {
    "roles/serviceusage.serviceUsageAdmin",
    "roles/iam.serviceAccountAdmin",
    "roles/iam.serviceAccountUser",
    "roles/cloudtasks.admin",
    "roles/run.admin",
    "roles/artifactregistry.admin",
    "roles/resourcemanager.projectIamAdmin",
}


def evaluate(**config: str) -> dict[str, Any]:
    values = {
        "gcp:project": PROJECT,
        "cloud-tasks-bootstrap:github_repository": REPO,
        **{f"cloud-tasks-bootstrap:{k}": v for k, v in config.items()},
    }
    done = subprocess.run(
        [sys.executable, str(HARNESS), json.dumps(values)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def default() -> dict[str, Any]:
    return evaluate()


def of_type(result: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [r for r in result["resources"] if r["type"] == type_]


def wif_bindings(result: dict[str, Any]) -> list[dict[str, Any]]:
    bindings = [r["inputs"] for r in of_type(result, "gcp:serviceaccount/iAMMember:IAMMember")]
    assert {b["role"] for b in bindings} == {"roles/iam.workloadIdentityUser"}
    return bindings


@pytest.mark.integration
class TestTrust:
    def test_the_provider_accepts_only_this_repository(self, default: dict[str, Any]) -> None:
        [provider] = of_type(
            default, "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"
        )
        inputs = provider["inputs"]
        assert inputs["attributeCondition"] == f"assertion.repository == '{REPO}'"
        assert inputs["oidc"]["issuerUri"] == "https://token.actions.githubusercontent.com"
        assert inputs["attributeMapping"]["attribute.repository"] == "assertion.repository"
        assert inputs["attributeMapping"]["google.subject"] == "assertion.sub"
        assert inputs["workloadIdentityPoolId"] == "github"

    def test_the_owner_id_is_pinned_too_when_configured(self) -> None:
        result = evaluate(github_repository_owner_id="4242")
        [provider] = of_type(
            result, "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"
        )
        assert provider["inputs"]["attributeCondition"] == (
            f"assertion.repository == '{REPO}' && assertion.repository_owner_id == '4242'"
        )

    def test_only_jobs_of_the_stacks_environment_may_impersonate_the_deployer(
        self, default: dict[str, Any]
    ) -> None:
        # Not the whole repository: a PR that edits a workflow could then deploy
        # without the environment's required reviewers.
        [binding] = [b for b in wif_bindings(default) if DEPLOYER_EMAIL in b["serviceAccountId"]]
        assert binding["member"] == (
            f"principalSet://iam.googleapis.com/{POOL}/attribute.environment/dev"
        )
        assert binding["serviceAccountId"] == (
            f"projects/{PROJECT}/serviceAccounts/{DEPLOYER_EMAIL}"
        )

    def test_the_environment_can_be_named(self) -> None:
        result = evaluate(environment="production")
        [binding] = [b for b in wif_bindings(result) if DEPLOYER_EMAIL in b["serviceAccountId"]]
        assert binding["member"].endswith("/attribute.environment/production")

    def test_the_previewer_is_read_only_and_for_the_whole_repository(
        self, default: dict[str, Any]
    ) -> None:
        [binding] = [b for b in wif_bindings(default) if PREVIEWER_EMAIL in b["serviceAccountId"]]
        assert binding["member"] == (
            f"principalSet://iam.googleapis.com/{POOL}/attribute.repository/{REPO}"
        )
        grants = [
            g["inputs"]
            for g in of_type(default, "gcp:projects/iAMMember:IAMMember")
            if g["inputs"]["member"] == f"serviceAccount:{PREVIEWER_EMAIL}"
        ]
        # Not roles/viewer: a preview without refresh reads no resource, only the project.
        assert [g["role"] for g in grants] == ["roles/browser"]
        assert set(PREVIEWER_ROLES) == {"roles/browser"}

    def test_outputs_are_what_the_workflows_need(self, default: dict[str, Any]) -> None:
        assert default["outputs"] == {
            "workload_identity_provider": f"{POOL}/providers/github-actions",
            "service_account": DEPLOYER_EMAIL,
            "principal_set": f"principalSet://iam.googleapis.com/{POOL}/attribute.environment/dev",
            "preview_service_account": PREVIEWER_EMAIL,
        }

    def test_no_keys_and_no_authoritative_iam(self, default: dict[str, Any]) -> None:
        types = {r["type"] for r in default["resources"]}
        assert "gcp:serviceaccount/key:Key" not in types
        assert not {t for t in types if "iAMBinding" in t or "iAMPolicy" in t}


class TestDeployerRoles:
    @pytest.mark.integration
    def test_the_deployer_holds_exactly_the_expected_project_roles(
        self, default: dict[str, Any]
    ) -> None:
        grants = [
            g
            for g in of_type(default, "gcp:projects/iAMMember:IAMMember")
            if g["inputs"]["member"] != f"serviceAccount:{PREVIEWER_EMAIL}"
        ]
        assert sorted(g["inputs"]["role"] for g in grants) == sorted(EXPECTED_ROLES)
        assert set(DEPLOYER_ROLES) == EXPECTED_ROLES
        assert {g["inputs"]["member"] for g in grants} == {f"serviceAccount:{DEPLOYER_EMAIL}"}
        assert {g["inputs"]["project"] for g in grants} == {PROJECT}

    @pytest.mark.integration
    def test_project_iam_admin_may_grant_only_the_runtime_writer_roles(
        self, default: dict[str, Any]
    ) -> None:
        conditioned = {
            g["inputs"]["role"]: g["inputs"]["condition"]
            for g in of_type(default, "gcp:projects/iAMMember:IAMMember")
            if g["inputs"].get("condition")
        }
        assert list(conditioned) == [PROJECT_IAM_ADMIN]
        expression = conditioned[PROJECT_IAM_ADMIN]["expression"]
        assert expression == (
            "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', [])"
            ".hasOnly(['roles/logging.logWriter', 'roles/monitoring.metricWriter'])"
        )

    @pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
    def test_the_roles_cover_every_resource_of_the_plan_and_nothing_more(self, stack: str) -> None:
        plan = json.loads((ROOT / "tests" / "snapshots" / f"plan-{stack}.json").read_text())
        # Components (tasks:index:*) are logical; the cloud never sees them.
        cloud_types = {r["type"] for r in plan["resources"] if not r["type"].startswith("tasks:")}
        uncovered = cloud_types - set(ROLE_FOR_TYPE)
        assert not uncovered, f"no deployer role for {uncovered}: add one to bootstrap/deployer.py"
        needed = {role for t in cloud_types for role in ROLE_FOR_TYPE[t]}
        assert needed == set(DEPLOYER_ROLES), f"unneeded roles: {set(DEPLOYER_ROLES) - needed}"

    @pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
    def test_the_program_grants_at_project_level_only_what_the_condition_allows(
        self, stack: str
    ) -> None:
        plan = json.loads((ROOT / "tests" / "snapshots" / f"plan-{stack}.json").read_text())
        roles = {
            r["inputs"]["role"]
            for r in plan["resources"]
            if r["type"] == "gcp:projects/iAMMember:IAMMember"
        }
        assert roles
        assert roles <= set(GRANTABLE_PROJECT_ROLES)


class TestConfig:
    @pytest.mark.parametrize(
        ("field", "value", "fragment"),
        [
            ("github_repository", "cloud-tasks-pipeline", "expected OWNER/NAME"),
            ("github_repository", "my-org/repo' || true || '", "expected OWNER/NAME"),
            ("github_repository_owner_id", "my-org", "numeric id"),
            ("pool_id", "gcp-pool", "not starting gcp-"),
            ("deployer_account_id", "Deployer", "6..30 lowercase"),
            ("previewer_account_id", "pulumi-deployer", "must differ from deployer_account_id"),
            ("environment", "prod stack", "a GitHub environment name"),
        ],
    )
    def test_bad_values_are_refused_with_the_key_and_the_fix(
        self, field: str, value: str, fragment: str
    ) -> None:
        values: dict[str, Any] = {"project": PROJECT, "github_repository": REPO, field: value}
        with pytest.raises(BootstrapConfigError, match=fragment) as caught:
            BootstrapConfig(**values)
        assert f"pulumi config set {field}" in str(caught.value)

    @pytest.mark.integration
    def test_the_program_refuses_a_bad_repository_before_declaring_anything(self) -> None:
        result = evaluate(github_repository="not a repo")
        assert "expected OWNER/NAME" in result["error"]
        assert "resources" not in result
