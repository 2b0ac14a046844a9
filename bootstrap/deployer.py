"""GitHub Actions -> Google Cloud trust, and the deployer account the pipeline's CI uses.

Creates, in one project (one bootstrap stack per target project):

- a Workload Identity pool and a GitHub OIDC provider whose attribute condition
  accepts tokens of ONE repository only (so no other repository on GitHub, even
  one that finds the provider's name, can exchange its token);
- the deployer service account, which only jobs running in the stack's GitHub
  *environment* may impersonate (`roles/iam.workloadIdentityUser` for the
  principal set `attribute.environment/<environment>`; no keys are created).
  The environment's protection rules (required reviewers, main branch only) are
  therefore what stands between a workflow and `pulumi up`: a job elsewhere in
  the repository, a PR that edits a workflow included, cannot get the deployer;
- exactly the project roles that `pulumi up` of the main program needs, listed in
  `DEPLOYER_ROLES` with the resources that need each (`ROLE_FOR_TYPE`), so a test
  can prove the list covers every resource type of every stack's plan and has
  nothing extra;
- a previewer account that reads only the project (`roles/browser`) for `pulumi preview` on pull
  requests, which any workflow run of the repository may impersonate (fork PRs
  get no OIDC token).

This module deliberately does not create the Pulumi state backend (Pulumi Cloud
via PULUMI_ACCESS_TOKEN, or a bucket you grant separately), GitHub settings
(secrets, variables, environments: docs/ci.md), or anything of the pipeline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_gcp as gcp

from contract.resources import (
    ARTIFACT_REGISTRY_ADMIN_ROLE,
    ARTIFACT_REPOSITORY_TYPE,
    BROWSER_ROLE,
    CLOUDTASKS_ADMIN_ROLE,
    IMAGE_TYPE,
    LOG_WRITER_ROLE,
    METRIC_WRITER_ROLE,
    PROJECT_IAM_ADMIN_ROLE,
    PROJECT_IAM_MEMBER_TYPE,
    PROJECT_SERVICE_TYPE,
    QUEUE_IAM_MEMBER_TYPE,
    QUEUE_TYPE,
    RUN_ADMIN_ROLE,
    RUN_SERVICE_IAM_MEMBER_TYPE,
    RUN_SERVICE_TYPE,
    SECRET_IAM_MEMBER_TYPE,
    SERVICE_ACCOUNT_ADMIN_ROLE,
    SERVICE_ACCOUNT_IAM_MEMBER_TYPE,
    SERVICE_ACCOUNT_TYPE,
    SERVICE_ACCOUNT_USER_ROLE,
    SERVICE_IDENTITY_TYPE,
    SERVICE_USAGE_ADMIN_ROLE,
    WORKLOAD_IDENTITY_USER_ROLE,
)

GITHUB_ISSUER: Final = "https://token.actions.githubusercontent.com"

# --- what the main program's `pulumi up` needs --------------------------------------------
SERVICE_USAGE_ADMIN: Final = SERVICE_USAGE_ADMIN_ROLE
SERVICE_ACCOUNT_ADMIN: Final = SERVICE_ACCOUNT_ADMIN_ROLE
SERVICE_ACCOUNT_USER: Final = SERVICE_ACCOUNT_USER_ROLE
CLOUD_TASKS_ADMIN: Final = CLOUDTASKS_ADMIN_ROLE
RUN_ADMIN: Final = RUN_ADMIN_ROLE
ARTIFACT_REGISTRY_ADMIN: Final = ARTIFACT_REGISTRY_ADMIN_ROLE
PROJECT_IAM_ADMIN: Final = PROJECT_IAM_ADMIN_ROLE

DEPLOYER_ROLES: Final[dict[str, str]] = {
    SERVICE_USAGE_ADMIN: "enable the pipeline's APIs (projects.Service) and create the Cloud "
    "Tasks service agent (projects.ServiceIdentity)",
    SERVICE_ACCOUNT_ADMIN: "create the invoker/runtime/enqueuer accounts and grant actAs on the "
    "invoker (serviceaccount.Account, serviceaccount.IAMMember)",
    SERVICE_ACCOUNT_USER: "attach the runtime account to the Cloud Run service "
    "(template.service_account needs iam.serviceAccounts.actAs) and the invoker's OIDC "
    "token to a queue-level http_target (actAs on the invoker)",
    CLOUD_TASKS_ADMIN: "create the queue and its enqueuer/viewer grants "
    "(cloudtasks.Queue, cloudtasks.QueueIamMember)",
    RUN_ADMIN: "deploy the worker and grant run.invoker on it "
    "(cloudrunv2.Service, cloudrunv2.ServiceIamMember; run.developer cannot set IAM)",
    ARTIFACT_REGISTRY_ADMIN: "create the image repository and push the worker image "
    "(artifactregistry.Repository, docker-build Image; writer cannot create repositories)",
    PROJECT_IAM_ADMIN: "grant the runtime account its log and metric writer roles "
    "(projects.IAMMember), conditioned to those two roles only",
}
"""Every project role the deployer holds, and why."""

ROLE_FOR_TYPE: Final[dict[str, tuple[str, ...]]] = {
    PROJECT_SERVICE_TYPE: (SERVICE_USAGE_ADMIN,),
    SERVICE_IDENTITY_TYPE: (SERVICE_USAGE_ADMIN,),
    SERVICE_ACCOUNT_TYPE: (SERVICE_ACCOUNT_ADMIN,),
    SERVICE_ACCOUNT_IAM_MEMBER_TYPE: (SERVICE_ACCOUNT_ADMIN,),
    # A queue-level http_target's OIDC token needs actAs on the invoker account.
    QUEUE_TYPE: (CLOUD_TASKS_ADMIN, SERVICE_ACCOUNT_USER),
    QUEUE_IAM_MEMBER_TYPE: (CLOUD_TASKS_ADMIN,),
    RUN_SERVICE_TYPE: (RUN_ADMIN, SERVICE_ACCOUNT_USER),
    RUN_SERVICE_IAM_MEMBER_TYPE: (RUN_ADMIN,),
    ARTIFACT_REPOSITORY_TYPE: (ARTIFACT_REGISTRY_ADMIN,),
    IMAGE_TYPE: (ARTIFACT_REGISTRY_ADMIN,),
    PROJECT_IAM_MEMBER_TYPE: (PROJECT_IAM_ADMIN,),
    # Per-secret, not project-wide: the owner of each secret named in `worker_secrets`
    # grants the deployer roles/secretmanager.admin on that secret only (docs/ci.md),
    # so that it may let the runtime account read it.
    SECRET_IAM_MEMBER_TYPE: (),
}
"""Resource types of the main program -> the project roles the deployer needs for them."""

PREVIEWER_ROLES: Final[dict[str, str]] = {
    BROWSER_ROLE: "the program's one lookup (organizations.get_project: "
    "resourcemanager.projects.get) during `pulumi preview`, which diffs against the "
    "Pulumi state without refreshing; it reads no resource and can change nothing",
}
"""The previewer's project roles: read-only."""

GRANTABLE_PROJECT_ROLES: Final = (LOG_WRITER_ROLE, METRIC_WRITER_ROLE)
"""The only roles the deployer may grant at project level (the runtime account's)."""

# IAM Conditions' documented way to delegate project IAM for a fixed set of roles: every
# setIamPolicy must add or remove only these; other calls of the role (get, getIamPolicy)
# see the attribute's default [] and pass.
PROJECT_IAM_CONDITION: Final = (
    "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', [])"
    f".hasOnly([{', '.join(repr(r) for r in GRANTABLE_PROJECT_ROLES)}])"
)

_REPOSITORY_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_POOL_ID_RE = re.compile(r"^[a-z0-9-]{4,32}$")
_ACCOUNT_ID_RE = re.compile(r"^[a-z](?:[-a-z0-9]{4,28}[a-z0-9])$")
_OWNER_ID_RE = re.compile(r"^[0-9]+$")
_ENVIRONMENT_RE = re.compile(r"^[A-Za-z0-9._-]{1,255}$")


class BootstrapConfigError(ValueError):
    """A bootstrap config value is invalid; the message names the key and the fix."""

    def __init__(self, key: str, value: object, problem: str) -> None:
        super().__init__(
            f"invalid bootstrap config {key} = {value!r}: {problem}. "
            f"Fix it with `pulumi config set {key} <value>` in bootstrap/."
        )


@dataclass(frozen=True)
class BootstrapConfig:
    project: str
    github_repository: str
    github_repository_owner_id: str | None = None
    environment: str = "dev"
    """GitHub environment whose jobs may deploy (default: the bootstrap stack's name)."""
    pool_id: str = "github"
    provider_id: str = "github-actions"
    deployer_account_id: str = "pulumi-deployer"
    previewer_account_id: str = "pulumi-previewer"

    def __post_init__(self) -> None:
        if not _REPOSITORY_RE.match(self.github_repository):
            raise BootstrapConfigError(
                "github_repository",
                self.github_repository,
                "expected OWNER/NAME exactly as GitHub shows it, e.g. my-org/cloud-tasks-pipeline",
            )
        if self.github_repository_owner_id is not None and not _OWNER_ID_RE.match(
            self.github_repository_owner_id
        ):
            raise BootstrapConfigError(
                "github_repository_owner_id",
                self.github_repository_owner_id,
                "expected the owner's numeric id (gh api users/OWNER --jq .id)",
            )
        for key in ("pool_id", "provider_id"):
            value = getattr(self, key)
            if not _POOL_ID_RE.match(value) or value.startswith("gcp-"):
                raise BootstrapConfigError(
                    key, value, "4..32 lowercase letters, digits and hyphens, not starting gcp-"
                )
        for key in ("deployer_account_id", "previewer_account_id"):
            value = getattr(self, key)
            if not _ACCOUNT_ID_RE.match(value):
                raise BootstrapConfigError(
                    key,
                    value,
                    "6..30 lowercase letters, digits and hyphens, starting with a letter",
                )
        if self.deployer_account_id == self.previewer_account_id:
            raise BootstrapConfigError(
                "previewer_account_id",
                self.previewer_account_id,
                "it must differ from deployer_account_id (the previewer is read-only)",
            )
        if not _ENVIRONMENT_RE.match(self.environment):
            raise BootstrapConfigError(
                "environment",
                self.environment,
                "a GitHub environment name (letters, digits, '-', '_', '.'; up to 255)",
            )

    @property
    def attribute_condition(self) -> str:
        """CEL over the GitHub token's claims: this repository (and owner id) only."""
        condition = f"assertion.repository == '{self.github_repository}'"
        if self.github_repository_owner_id:
            condition += f" && assertion.repository_owner_id == '{self.github_repository_owner_id}'"
        return condition


def load_config() -> BootstrapConfig:
    """Read the bootstrap stack's config; raise `BootstrapConfigError` on a bad value."""
    cfg = pulumi.Config()
    project = pulumi.Config("gcp").get("project")
    if not project:
        raise BootstrapConfigError("gcp:project", None, "the target project id is required")
    repository = cfg.get("github_repository")
    if not repository:
        raise BootstrapConfigError(
            "github_repository", None, "required: the OWNER/NAME whose workflows may deploy"
        )
    return BootstrapConfig(
        project=project,
        github_repository=repository,
        github_repository_owner_id=cfg.get("github_repository_owner_id") or None,
        # One bootstrap stack per target project, named like the main stack and its
        # GitHub environment (dev, staging, prod).
        environment=cfg.get("environment") or pulumi.get_stack(),
        pool_id=cfg.get("pool_id") or "github",
        provider_id=cfg.get("provider_id") or "github-actions",
        deployer_account_id=cfg.get("deployer_account_id") or "pulumi-deployer",
        previewer_account_id=cfg.get("previewer_account_id") or "pulumi-previewer",
    )


# APIs the trust itself needs: IAM (pool, accounts), STS (token exchange),
# IAM Credentials (impersonation), Resource Manager (project IAM).
BOOTSTRAP_APIS: Final = (
    "iam.googleapis.com",
    "sts.googleapis.com",
    "iamcredentials.googleapis.com",
    "cloudresourcemanager.googleapis.com",
)


class GitHubDeployer(pulumi.ComponentResource):
    """Workload Identity pool + GitHub provider + deployer and previewer accounts."""

    pool: gcp.iam.WorkloadIdentityPool
    provider: gcp.iam.WorkloadIdentityPoolProvider
    account: gcp.serviceaccount.Account
    previewer: gcp.serviceaccount.Account
    principal_set: pulumi.Output[str]
    """`principalSet://.../attribute.environment/ENV`: the jobs of that environment."""
    preview_principal_set: pulumi.Output[str]
    """`principalSet://.../attribute.repository/OWNER/NAME`: every workflow run of the repo."""

    def _impersonated_by(
        self, name: str, account: gcp.serviceaccount.Account, attribute: str
    ) -> pulumi.Output[str]:
        """Let the pool's principals with `attribute` (e.g. `attribute.environment/prod`)
        impersonate `account`; returns that principal set."""
        principal_set = self.pool.name.apply(
            lambda pool: f"principalSet://iam.googleapis.com/{pool}/{attribute}"
        )
        gcp.serviceaccount.IAMMember(
            name,
            service_account_id=account.name,
            role=WORKLOAD_IDENTITY_USER_ROLE,
            member=principal_set,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return principal_set

    def __init__(
        self, name: str, config: BootstrapConfig, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("bootstrap:index:GitHubDeployer", name, None, opts)
        apis = [
            gcp.projects.Service(
                f"{name}-{api.split('.')[0]}",
                project=config.project,
                service=api,
                disable_on_destroy=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for api in BOOTSTRAP_APIS
        ]
        after_apis = pulumi.ResourceOptions(parent=self, depends_on=apis)

        self.pool = gcp.iam.WorkloadIdentityPool(
            f"{name}-pool",
            project=config.project,
            workload_identity_pool_id=config.pool_id,
            display_name="GitHub Actions",
            description=f"GitHub Actions OIDC tokens of {config.github_repository}",
            opts=after_apis,
        )
        self.provider = gcp.iam.WorkloadIdentityPoolProvider(
            f"{name}-provider",
            project=config.project,
            workload_identity_pool_id=self.pool.workload_identity_pool_id,
            workload_identity_pool_provider_id=config.provider_id,
            display_name="GitHub Actions OIDC",
            attribute_mapping={
                "google.subject": "assertion.sub",
                "attribute.repository": "assertion.repository",
                "attribute.repository_owner_id": "assertion.repository_owner_id",
                "attribute.ref": "assertion.ref",
                "attribute.environment": "assertion.environment",
                "attribute.event_name": "assertion.event_name",
            },
            # Without a condition any GitHub repository could present a token to this pool.
            attribute_condition=config.attribute_condition,
            oidc=gcp.iam.WorkloadIdentityPoolProviderOidcArgs(issuer_uri=GITHUB_ISSUER),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.account = gcp.serviceaccount.Account(
            f"{name}-account",
            project=config.project,
            account_id=config.deployer_account_id,
            display_name="Pulumi deployer (GitHub Actions)",
            description=f"Impersonated by {config.github_repository} workflows to run pulumi up.",
            opts=after_apis,
        )
        # The pool accepts tokens of this repository only (attribute condition), so
        # within it the environment alone identifies the deploy jobs.
        self.principal_set = self._impersonated_by(
            f"{name}-wif-user", self.account, f"attribute.environment/{config.environment}"
        )

        self.previewer = gcp.serviceaccount.Account(
            f"{name}-previewer",
            project=config.project,
            account_id=config.previewer_account_id,
            display_name="Pulumi previewer (GitHub Actions, read-only)",
            description=f"Impersonated by {config.github_repository} PR workflows to run "
            "pulumi preview.",
            opts=after_apis,
        )
        self.preview_principal_set = self._impersonated_by(
            f"{name}-previewer-wif-user",
            self.previewer,
            f"attribute.repository/{config.github_repository}",
        )
        for role in PREVIEWER_ROLES:
            gcp.projects.IAMMember(
                f"{name}-previewer-{role.split('/')[1].replace('.', '-').lower()}",
                project=config.project,
                role=role,
                member=self.previewer.member,
                opts=pulumi.ResourceOptions(parent=self),
            )
        for role in DEPLOYER_ROLES:
            condition = (
                gcp.projects.IAMMemberConditionArgs(
                    title="only-runtime-writer-roles",
                    description="Grant or revoke only "
                    + " and ".join(GRANTABLE_PROJECT_ROLES)
                    + " at project level.",
                    expression=PROJECT_IAM_CONDITION,
                )
                if role == PROJECT_IAM_ADMIN
                else None
            )
            gcp.projects.IAMMember(
                f"{name}-{role.split('/')[1].replace('.', '-').lower()}",
                project=config.project,
                role=role,
                member=self.account.member,
                condition=condition,
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs(
            {
                "workload_identity_provider": self.provider.name,
                "service_account": self.account.email,
                "principal_set": self.principal_set,
                "preview_service_account": self.previewer.email,
            }
        )
