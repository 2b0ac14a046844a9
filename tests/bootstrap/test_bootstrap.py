"""The bootstrap program, evaluated offline under Pulumi mocks.

Each evaluation runs in its own process (bootstrap_under_mocks.py): Pulumi's
mock runtime is global, and the main program's tests use it in this process.
The deployer's grants are checked against a literal list here (a change to
them must be deliberate) and against every resource type in every stack's
plan (tests/snapshots/plan-<stack>.json), so they are exactly enough; the
foundation's accounts against the members the main program's plan grants.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bootstrap.deployer import (
    BUCKET_DEPLOYER_PERMISSIONS,
    DEPLOYER_GRANTS,
    GRANTS_FOR_TYPE,
    METRICS_DEPLOYER_PERMISSIONS,
    PREVIEWER_ROLES,
    RUN_DEPLOYER_PERMISSIONS,
    BootstrapConfig,
    BootstrapConfigError,
)

ROOT = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).parent / "bootstrap_under_mocks.py"
REPO = "my-org/cloud-tasks-pipeline"
REPO_ID = "876543210"
PROJECT = "my-tasks-dev"  # Pulumi.dev.yaml's: bootstrap stack dev prepares main stack dev
POOL = "projects/123456789012/locations/global/workloadIdentityPools/github"
DEPLOYER_EMAIL = f"pulumi-deployer@{PROJECT}.iam.gserviceaccount.com"
PREVIEWER_EMAIL = f"pulumi-previewer@{PROJECT}.iam.gserviceaccount.com"

# (role, where): every grant of the deployer, written out.
EXPECTED_GRANTS = {
    ("roles/cloudtasks.admin", "project"),
    ("roles/browser", "project"),
    ("custom:tasksPipelineRunDeployer", "project"),
    ("custom:tasksPipelineBucketDeployer", "project"),
    ("custom:tasksPipelineMetricsDeployer", "project"),
    ("roles/iam.serviceAccountUser", "runtime account"),
    ("roles/iam.serviceAccountUser", "invoker account"),
    ("roles/iam.serviceAccountAdmin", "invoker account"),
    ("roles/artifactregistry.writer", "image repository"),
    ("roles/monitoring.alertPolicyEditor", "project"),
    ("roles/monitoring.dashboardEditor", "project"),
    ("roles/monitoring.notificationChannelEditor", "project"),
}


def evaluate(**config: str) -> dict[str, Any]:
    values = {
        "gcp:project": PROJECT,
        "cloud-tasks-bootstrap:github_repository": REPO,
        "cloud-tasks-bootstrap:github_repository_id": REPO_ID,
        **{k if ":" in k else f"cloud-tasks-bootstrap:{k}": v for k, v in config.items()},
    }
    done = subprocess.run(
        [sys.executable, str(HARNESS), json.dumps(values)],
        cwd=ROOT,
        # This checkout's code, not whichever one an editable install points at.
        env={**os.environ, "PYTHONPATH": str(ROOT)},
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
    every = [r["inputs"] for r in of_type(result, "gcp:serviceaccount/iAMMember:IAMMember")]
    bindings = [b for b in every if b["role"] == "roles/iam.workloadIdentityUser"]
    # Only principal sets of the pool may impersonate; nothing else is a WIF binding.
    assert all(b["member"].startswith("principalSet://") for b in bindings)
    assert not [b for b in every if b["member"].startswith("principalSet://") and b not in bindings]
    return bindings


@pytest.mark.integration
class TestTrust:
    def test_the_provider_accepts_only_this_repository(self, default: dict[str, Any]) -> None:
        [provider] = of_type(
            default, "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"
        )
        inputs = provider["inputs"]
        assert inputs["attributeCondition"] == (
            f"assertion.repository == '{REPO}' && assertion.repository_id == '{REPO_ID}'"
        )
        assert inputs["attributeMapping"]["attribute.repository_id"] == "assertion.repository_id"
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
            f"assertion.repository == '{REPO}' && assertion.repository_id == '{REPO_ID}'"
            " && assertion.repository_owner_id == '4242'"
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

    def test_the_previewer_is_read_only_and_for_pull_request_jobs_only(
        self, default: dict[str, Any]
    ) -> None:
        [binding] = [b for b in wif_bindings(default) if PREVIEWER_EMAIL in b["serviceAccountId"]]
        # Not every workflow of the repository: pushes, schedules and manual runs of any
        # branch have no reason to preview.
        assert binding["member"] == (
            f"principalSet://iam.googleapis.com/{POOL}/attribute.event_name/pull_request"
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
            "invoker_email": f"tasks-invoker@{PROJECT}.iam.gserviceaccount.com",
            "runtime_email": f"tasks-runtime@{PROJECT}.iam.gserviceaccount.com",
            "enqueuer_email": f"tasks-enqueuer@{PROJECT}.iam.gserviceaccount.com",
            "tasks_agent_email": "service-123456789012@gcp-sa-cloudtasks.iam.gserviceaccount.com",
            "workload_identity_provider": f"{POOL}/providers/github-actions",
            "service_account": DEPLOYER_EMAIL,
            "principal_set": f"principalSet://iam.googleapis.com/{POOL}/attribute.environment/dev",
            "preview_service_account": PREVIEWER_EMAIL,
        }

    def test_no_keys_and_no_authoritative_iam(self, default: dict[str, Any]) -> None:
        types = {r["type"] for r in default["resources"]}
        assert "gcp:serviceaccount/key:Key" not in types
        assert not {t for t in types if "iAMBinding" in t or "iAMPolicy" in t}


def deployer_grants(result: dict[str, Any]) -> set[tuple[str, str]]:
    """(role, where) of every grant to the deployer, read from the declared resources."""
    member = f"serviceAccount:{DEPLOYER_EMAIL}"
    where = {
        f"projects/{PROJECT}/serviceAccounts/tasks-runtime@{PROJECT}.iam.gserviceaccount.com": (
            "runtime account"
        ),
        f"projects/{PROJECT}/serviceAccounts/tasks-invoker@{PROJECT}.iam.gserviceaccount.com": (
            "invoker account"
        ),
    }
    grants = set()
    for resource in result["resources"]:
        inputs = resource["inputs"]
        if inputs.get("member") != member:
            continue
        role = inputs["role"]
        if role.startswith("projects/"):
            role = "custom:" + role.rsplit("/", 1)[1]
        if resource["type"] == "gcp:projects/iAMMember:IAMMember":
            grants.add((role, "project"))
        elif resource["type"] == "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember":
            assert inputs["repository"] == "tasks"
            grants.add((role, "image repository"))
        else:
            grants.add((role, where[inputs["serviceAccountId"]]))
    return grants


class TestDeployerGrants:
    @pytest.mark.integration
    def test_the_deployer_holds_exactly_the_expected_grants(self, default: dict[str, Any]) -> None:
        assert deployer_grants(default) == EXPECTED_GRANTS
        assert {(g.role, g.scope) for g in DEPLOYER_GRANTS} == EXPECTED_GRANTS

    @pytest.mark.integration
    def test_no_project_wide_admin_of_accounts_iam_or_apis(self, default: dict[str, Any]) -> None:
        # Project-wide serviceAccountAdmin/User would let a deploy job act as any account,
        # its own Workload Identity binding included; projectIamAdmin could grant owner.
        project_roles = {role for role, where in deployer_grants(default) if where == "project"}
        assert not project_roles & {
            "roles/iam.serviceAccountAdmin",
            "roles/iam.serviceAccountUser",
            "roles/resourcemanager.projectIamAdmin",
            "roles/serviceusage.serviceUsageAdmin",
            "roles/run.admin",
            "roles/artifactregistry.admin",
            "roles/owner",
            "roles/editor",
        }

    @pytest.mark.integration
    def test_the_run_role_is_cloud_run_services_only(self, default: dict[str, Any]) -> None:
        [role] = [
            r
            for r in of_type(default, "gcp:projects/iAMCustomRole:IAMCustomRole")
            if r["inputs"]["roleId"] == "tasksPipelineRunDeployer"
        ]
        permissions = role["inputs"]["permissions"]
        assert permissions == sorted(RUN_DEPLOYER_PERMISSIONS)
        assert all(
            p.startswith(("run.services.", "run.operations.", "run.revisions."))
            for p in permissions
        )
        assert "run.jobs.run" not in permissions

    @pytest.mark.integration
    def test_the_bucket_role_is_buckets_only_never_objects(self, default: dict[str, Any]) -> None:
        [role] = [
            r
            for r in of_type(default, "gcp:projects/iAMCustomRole:IAMCustomRole")
            if r["inputs"]["roleId"] == "tasksPipelineBucketDeployer"
        ]
        permissions = role["inputs"]["permissions"]
        assert permissions == sorted(BUCKET_DEPLOYER_PERMISSIONS)
        assert all(p.startswith("storage.buckets.") for p in permissions)
        assert "storage.buckets.setIamPolicy" in permissions

    @pytest.mark.integration
    def test_the_metrics_role_is_log_metrics_only(self, default: dict[str, Any]) -> None:
        [role] = [
            r
            for r in of_type(default, "gcp:projects/iAMCustomRole:IAMCustomRole")
            if r["inputs"]["roleId"] == "tasksPipelineMetricsDeployer"
        ]
        permissions = role["inputs"]["permissions"]
        assert permissions == sorted(METRICS_DEPLOYER_PERMISSIONS)
        assert all(p.startswith("logging.logMetrics.") for p in permissions)

    @pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
    def test_the_grants_cover_every_resource_of_the_plan_and_nothing_more(self, stack: str) -> None:
        plan = json.loads((ROOT / "tests" / "snapshots" / f"plan-{stack}.json").read_text())
        # Components (tasks:index:*) are logical; the cloud never sees them.
        cloud_types = {r["type"] for r in plan["resources"] if not r["type"].startswith("tasks:")}
        uncovered = cloud_types - set(GRANTS_FOR_TYPE)
        assert not uncovered, f"no deployer grant for {uncovered}: add one to bootstrap/deployer.py"
        needed = {grant for t in cloud_types for grant in GRANTS_FOR_TYPE[t]}
        assert needed == set(DEPLOYER_GRANTS), f"unneeded: {set(DEPLOYER_GRANTS) - needed}"

    @pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
    def test_the_program_grants_nothing_at_project_level(self, stack: str) -> None:
        plan = json.loads((ROOT / "tests" / "snapshots" / f"plan-{stack}.json").read_text())
        assert not [r for r in plan["resources"] if r["type"] == "gcp:projects/iAMMember:IAMMember"]


@pytest.mark.integration
class TestFoundation:
    def test_the_pipelines_apis_are_enabled_and_kept_on_destroy(
        self, default: dict[str, Any]
    ) -> None:
        services = of_type(default, "gcp:projects/service:Service")
        assert {s["inputs"]["service"] for s in services} == {
            "cloudtasks.googleapis.com",
            "run.googleapis.com",
            "iam.googleapis.com",
            "iamcredentials.googleapis.com",
            "artifactregistry.googleapis.com",
            "cloudresourcemanager.googleapis.com",
            "secretmanager.googleapis.com",
            "monitoring.googleapis.com",
            "storage.googleapis.com",
            "cloudtrace.googleapis.com",
            "telemetry.googleapis.com",
            "logging.googleapis.com",
            "sts.googleapis.com",
        }
        assert all(s["inputs"]["disableOnDestroy"] is False for s in services)

    def test_the_tasks_agent_may_mint_the_invokers_tokens_and_nothing_else(
        self, default: dict[str, Any]
    ) -> None:
        """An agent created on request gets no role: without this grant Cloud Tasks cannot
        mint the invoker's ID token and no task ever reaches the worker."""
        [agent] = of_type(default, "gcp:projects/serviceIdentity:ServiceIdentity")
        assert agent["inputs"]["service"] == "cloudtasks.googleapis.com"
        agent_member = agent["outputs"]["member"]
        grants = [
            r["inputs"] for r in default["resources"] if r["inputs"].get("member") == agent_member
        ]
        invoker = f"tasks-invoker@{PROJECT}.iam.gserviceaccount.com"
        assert grants == [
            {
                "serviceAccountId": f"projects/{PROJECT}/serviceAccounts/{invoker}",
                "role": "roles/iam.serviceAccountOpenIdTokenCreator",
                "member": agent_member,
            }
        ]

    @pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
    def test_the_accounts_are_the_ones_the_main_stack_grants(self, stack: str) -> None:
        project = {"dev": "my-tasks-dev", "staging": "my-tasks-staging", "prod": "my-tasks-prod"}
        result = evaluate(**{"main_stack": stack, "gcp:project": project[stack]})
        created = {
            f"serviceAccount:{a['outputs']['email']}"
            for a in of_type(result, "gcp:serviceaccount/account:Account")
        }
        plan = json.loads((ROOT / "tests" / "snapshots" / f"plan-{stack}.json").read_text())
        members = {
            r["inputs"]["member"]
            for r in plan["resources"]
            if r["inputs"].get("member", "").startswith("serviceAccount:tasks-")
        }
        runtime = {
            f"serviceAccount:{r['inputs']['template']['serviceAccount']}"
            for r in plan["resources"]
            if r["type"] == "gcp:cloudrunv2/service:Service"
        }
        assert members | runtime <= created

    def test_everything_waits_for_the_api_it_calls(self, default: dict[str, Any]) -> None:
        api_of = {
            "gcp:projects/iAMMember:IAMMember": "pipeline-cloudresourcemanager",
            "gcp:serviceaccount/account:Account": "pipeline-iam",
            "gcp:projects/serviceIdentity:ServiceIdentity": "pipeline-cloudtasks",
            "gcp:artifactregistry/repository:Repository": "pipeline-artifactregistry",
            "gcp:iam/workloadIdentityPool:WorkloadIdentityPool": "pipeline-iam",
            "gcp:projects/iAMCustomRole:IAMCustomRole": "pipeline-iam",
        }
        checked = 0
        for resource in default["resources"]:
            api = api_of.get(resource["type"])
            if api:
                assert api in resource["dependencies"], resource["name"]
                checked += 1
        assert checked >= 10

    def test_the_repository_has_a_cleanup_policy(self, default: dict[str, Any]) -> None:
        [repository] = of_type(default, "gcp:artifactregistry/repository:Repository")
        inputs = repository["inputs"]
        assert (inputs["repositoryId"], inputs["location"], inputs["format"]) == (
            "tasks",
            "europe-west1",
            "DOCKER",
        )
        assert inputs["cleanupPolicyDryRun"] is False
        policies = {p["id"]: p for p in inputs["cleanupPolicies"]}
        delete = policies["delete-untagged-after-a-week"]
        assert delete["action"] == "DELETE"
        assert delete["condition"] == {"tagState": "UNTAGGED", "olderThan": "604800s"}
        assert policies["keep-5-most-recent"]["mostRecentVersions"] == {"keepCount": 5}

    def test_the_runtime_account_may_write_spans_only_where_the_stack_exports_them(
        self, default: dict[str, Any]
    ) -> None:
        def trace_grants(result: dict[str, Any]) -> list[dict[str, Any]]:
            return [
                r["inputs"]
                for r in of_type(result, "gcp:projects/iAMMember:IAMMember")
                if r["inputs"]["role"] == "roles/cloudtrace.agent"
            ]

        assert trace_grants(default) == []  # dev: trace_export off
        prod = evaluate(**{"main_stack": "prod", "gcp:project": "my-tasks-prod"})
        runtime = "serviceAccount:tasks-runtime@my-tasks-prod.iam.gserviceaccount.com"
        assert trace_grants(prod) == [
            {"project": "my-tasks-prod", "role": "roles/cloudtrace.agent", "member": runtime}
        ]

    def test_without_a_repository_only_the_foundation_is_created(self) -> None:
        result = evaluate(github_repository="", github_repository_id="")
        types = {r["type"] for r in result["resources"]}
        assert "gcp:iam/workloadIdentityPool:WorkloadIdentityPool" not in types
        assert "gcp:artifactregistry/repository:Repository" in types
        assert set(result["outputs"]) == {
            "invoker_email",
            "runtime_email",
            "enqueuer_email",
            "tasks_agent_email",
        }

    def test_a_project_other_than_the_main_stacks_is_refused(self) -> None:
        result = evaluate(**{"gcp:project": "someone-else"})
        assert "deploys into 'my-tasks-dev'" in result["error"]


class TestConfig:
    @pytest.mark.parametrize(
        ("field", "value", "fragment"),
        [
            ("github_repository", "cloud-tasks-pipeline", "expected OWNER/NAME"),
            ("github_repository", "my-org/repo' || true || '", "expected OWNER/NAME"),
            ("github_repository_owner_id", "my-org", "numeric id"),
            ("github_repository_id", "my-org/repo", "repository's numeric id"),
            ("pool_id", "gcp-pool", "not starting gcp-"),
            ("deployer_account_id", "Deployer", "6..30 lowercase"),
            ("previewer_account_id", "pulumi-deployer", "must differ from deployer_account_id"),
            ("environment", "prod stack", "a GitHub environment name"),
        ],
    )
    def test_bad_values_are_refused_with_the_key_and_the_fix(
        self, field: str, value: str, fragment: str
    ) -> None:
        values: dict[str, Any] = {
            "project": PROJECT,
            "github_repository": REPO,
            "github_repository_id": REPO_ID,
            field: value,
        }
        with pytest.raises(BootstrapConfigError, match=fragment) as caught:
            BootstrapConfig(**values)
        assert f"pulumi config set {field}" in str(caught.value)

    @pytest.mark.integration
    def test_the_program_refuses_a_bad_repository_before_declaring_anything(self) -> None:
        result = evaluate(github_repository="not a repo")
        assert "expected OWNER/NAME" in result["error"]
        assert "resources" not in result
