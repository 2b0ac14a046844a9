"""GitHub Actions -> Google Cloud trust, and the deployer and previewer accounts.

Creates, in one project (one bootstrap stack per stack of the main program):

- a Workload Identity pool and a GitHub OIDC provider whose attribute condition
  accepts tokens of ONE repository only, pinned by name and numeric id (a
  deleted repository's name can be registered again by someone else);
- the deployer service account, which only jobs running in the stack's GitHub
  *environment* may impersonate (`roles/iam.workloadIdentityUser` for the
  principal set `attribute.environment/<environment>`; no keys are created).
  The environment's protection rules (required reviewers, main branch only) are
  therefore what stands between a workflow and `pulumi up`;
- exactly the grants `pulumi up` of the main program needs (`DEPLOYER_GRANTS`),
  most of them on one resource of `Foundation` (the runtime and invoker accounts,
  the image repository) rather than the project, with the resource types that
  need each (`GRANTS_FOR_TYPE`), so a test can prove the list covers every
  resource type of every stack's plan and has nothing extra. The deployer holds
  no project-wide IAM, service-account or service-usage admin: it cannot act as,
  or grant roles on, anything but the pipeline's own accounts;
- a previewer account that reads only the project (`roles/browser`) for
  `pulumi preview` on pull requests, which only jobs triggered by a pull request
  of the repository may impersonate (fork PRs get no OIDC token).

This module deliberately does not create the Pulumi state backend (Pulumi Cloud
via PULUMI_ACCESS_TOKEN, or a bucket you grant separately), GitHub settings
(secrets, variables, environments: docs/ci.md), or anything the pipeline runs on
(`bootstrap.foundation` does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

import pulumi
import pulumi_gcp as gcp

from bootstrap.foundation import Foundation
from contract.resources import (
    ALERT_POLICY_TYPE,
    ARTIFACT_REGISTRY_WRITER_ROLE,
    BROWSER_ROLE,
    BUCKET_IAM_MEMBER_TYPE,
    BUCKET_TYPE,
    CLOUDTASKS_ADMIN_ROLE,
    DASHBOARD_TYPE,
    IAM_API,
    IMAGE_TYPE,
    LOG_METRIC_TYPE,
    MONITORING_ALERT_POLICY_EDITOR_ROLE,
    MONITORING_CHANNEL_EDITOR_ROLE,
    MONITORING_DASHBOARD_EDITOR_ROLE,
    NOTIFICATION_CHANNEL_TYPE,
    QUEUE_IAM_MEMBER_TYPE,
    QUEUE_TYPE,
    RESOURCE_MANAGER_API,
    RUN_SERVICE_IAM_MEMBER_TYPE,
    RUN_SERVICE_TYPE,
    SECRET_IAM_MEMBER_TYPE,
    SERVICE_ACCOUNT_ADMIN_ROLE,
    SERVICE_ACCOUNT_IAM_MEMBER_TYPE,
    SERVICE_ACCOUNT_USER_ROLE,
    WORKLOAD_IDENTITY_USER_ROLE,
)

GITHUB_ISSUER: Final = "https://token.actions.githubusercontent.com"

# --- what the main program's `pulumi up` needs --------------------------------------------
RUN_DEPLOYER_ROLE_ID: Final = "tasksPipelineRunDeployer"
"""A custom role instead of roles/run.admin: Cloud Run services and their IAM only (no
jobs, worker pools or domain mappings). Permissions from
https://cloud.google.com/run/docs/reference/iam/permissions; `run.operations.get` polls
the v2 API's long-running operations, `run.revisions.*` read the service's status."""
RUN_DEPLOYER_PERMISSIONS: Final = (
    "run.operations.get",
    "run.revisions.get",
    "run.revisions.list",
    "run.services.create",
    "run.services.delete",
    "run.services.get",
    "run.services.getIamPolicy",
    "run.services.list",
    "run.services.setIamPolicy",
    "run.services.update",
)
RUN_DEPLOYER: Final = f"custom:{RUN_DEPLOYER_ROLE_ID}"
"""How `DEPLOYER_GRANTS` names the custom role (its full name needs the project)."""

BUCKET_DEPLOYER_ROLE_ID: Final = "tasksPipelineBucketDeployer"
"""A custom role instead of roles/storage.admin: buckets and their IAM policy, and no
`storage.objects.*` at all, so the deployer can create the dead-letter bucket and grant
on it but never read a dead letter. Permissions from
https://cloud.google.com/storage/docs/access-control/iam-permissions."""
BUCKET_DEPLOYER_PERMISSIONS: Final = (
    "storage.buckets.create",
    "storage.buckets.delete",
    "storage.buckets.get",
    "storage.buckets.getIamPolicy",
    "storage.buckets.setIamPolicy",
    "storage.buckets.update",
)
BUCKET_DEPLOYER: Final = f"custom:{BUCKET_DEPLOYER_ROLE_ID}"

METRICS_DEPLOYER_ROLE_ID: Final = "tasksPipelineMetricsDeployer"
"""A custom role instead of roles/logging.configWriter (which also edits sinks, that could
send every log elsewhere): log-based metrics only. Permissions from
https://cloud.google.com/logging/docs/access-control#permissions_and_roles."""
METRICS_DEPLOYER_PERMISSIONS: Final = (
    "logging.logMetrics.create",
    "logging.logMetrics.delete",
    "logging.logMetrics.get",
    "logging.logMetrics.list",
    "logging.logMetrics.update",
)
METRICS_DEPLOYER: Final = f"custom:{METRICS_DEPLOYER_ROLE_ID}"


@dataclass(frozen=True)
class CustomRole:
    resource: str  # the Pulumi resource name's suffix: kept, so no stack replaces its role
    role_id: str
    title: str
    description: str
    permissions: tuple[str, ...]


CUSTOM_ROLES: Final[dict[str, CustomRole]] = {
    RUN_DEPLOYER: CustomRole(
        "run-deployer-role",
        RUN_DEPLOYER_ROLE_ID,
        "Cloud Tasks pipeline: deploy the worker",
        "Cloud Run services and their IAM; nothing else of Cloud Run.",
        RUN_DEPLOYER_PERMISSIONS,
    ),
    BUCKET_DEPLOYER: CustomRole(
        "bucket-deployer-role",
        BUCKET_DEPLOYER_ROLE_ID,
        "Cloud Tasks pipeline: deploy the dead-letter bucket",
        "Cloud Storage buckets and their IAM; no access to objects.",
        BUCKET_DEPLOYER_PERMISSIONS,
    ),
    METRICS_DEPLOYER: CustomRole(
        "metrics-deployer-role",
        METRICS_DEPLOYER_ROLE_ID,
        "Cloud Tasks pipeline: deploy log-based metrics",
        "Log-based metrics only; no sinks, exclusions or log buckets.",
        METRICS_DEPLOYER_PERMISSIONS,
    ),
}
"""The deployer's custom roles, by the name `DEPLOYER_GRANTS` gives them."""

Scope = Literal["project", "invoker account", "runtime account", "image repository"]


@dataclass(frozen=True)
class Grant:
    role: str
    scope: Scope


DEPLOYS_QUEUES: Final = Grant(CLOUDTASKS_ADMIN_ROLE, "project")
READS_PROJECT: Final = Grant(BROWSER_ROLE, "project")
DEPLOYS_SERVICE: Final = Grant(RUN_DEPLOYER, "project")
ACTS_AS_RUNTIME: Final = Grant(SERVICE_ACCOUNT_USER_ROLE, "runtime account")
ACTS_AS_INVOKER: Final = Grant(SERVICE_ACCOUNT_USER_ROLE, "invoker account")
ADMINISTERS_INVOKER: Final = Grant(SERVICE_ACCOUNT_ADMIN_ROLE, "invoker account")
PUSHES_IMAGES: Final = Grant(ARTIFACT_REGISTRY_WRITER_ROLE, "image repository")
# Operations (components.monitoring). Project-level: alert policies, dashboards and
# channels have no narrower IAM scope.
EDITS_ALERTS: Final = Grant(MONITORING_ALERT_POLICY_EDITOR_ROLE, "project")
EDITS_DASHBOARDS: Final = Grant(MONITORING_DASHBOARD_EDITOR_ROLE, "project")
EDITS_CHANNELS: Final = Grant(MONITORING_CHANNEL_EDITOR_ROLE, "project")
DEPLOYS_BUCKET: Final = Grant(BUCKET_DEPLOYER, "project")
DEPLOYS_METRICS: Final = Grant(METRICS_DEPLOYER, "project")

DEPLOYER_GRANTS: Final[dict[Grant, str]] = {
    DEPLOYS_QUEUES: "create the queues and their enqueuer grants (cloudtasks.Queue, "
    "cloudtasks.QueueIamMember; queues do not exist yet, so project-level), and the smoke "
    "test's CreateTask/GetTask",
    READS_PROJECT: "the program's one lookup (organizations.get_project: the project number "
    "in the worker's deterministic URL)",
    DEPLOYS_SERVICE: "deploy the worker and grant run.invoker on it (cloudrunv2.Service, "
    "cloudrunv2.ServiceIamMember): custom role " + RUN_DEPLOYER_ROLE_ID,
    ACTS_AS_RUNTIME: "attach the runtime account to the Cloud Run service "
    "(template.service_account needs iam.serviceAccounts.actAs on it)",
    ACTS_AS_INVOKER: "attach the invoker's OIDC token to a queue-level http_target and to "
    "the smoke test's tasks (actAs on the invoker)",
    ADMINISTERS_INVOKER: "grant the enqueuers actAs on the invoker (serviceaccount.IAMMember "
    "sets the invoker account's IAM policy)",
    PUSHES_IMAGES: "push the worker image (docker-build Image) to the stack's repository",
    EDITS_ALERTS: "declare the alert policies (monitoring.AlertPolicy)",
    EDITS_DASHBOARDS: "declare the stack's dashboard (monitoring.Dashboard)",
    EDITS_CHANNELS: "declare the email notification channels (monitoring.NotificationChannel) "
    "and attach existing ones to the alerts",
    DEPLOYS_BUCKET: "create the dead-letter bucket and grant on it (storage.Bucket, "
    "storage.BucketIAMMember; the bucket does not exist yet, so project-level): custom role "
    + BUCKET_DEPLOYER_ROLE_ID
    + ", no access to objects",
    DEPLOYS_METRICS: "create the log-based metrics of dead letters and dropped tasks "
    "(logging.Metric): custom role " + METRICS_DEPLOYER_ROLE_ID + ", log metrics only",
}
"""Every grant the deployer holds, where, and why."""

GRANTS_FOR_TYPE: Final[dict[str, tuple[Grant, ...]]] = {
    QUEUE_TYPE: (DEPLOYS_QUEUES, ACTS_AS_INVOKER),
    QUEUE_IAM_MEMBER_TYPE: (DEPLOYS_QUEUES,),
    RUN_SERVICE_TYPE: (DEPLOYS_SERVICE, ACTS_AS_RUNTIME, READS_PROJECT),
    RUN_SERVICE_IAM_MEMBER_TYPE: (DEPLOYS_SERVICE,),
    SERVICE_ACCOUNT_IAM_MEMBER_TYPE: (ADMINISTERS_INVOKER,),
    IMAGE_TYPE: (PUSHES_IMAGES,),
    ALERT_POLICY_TYPE: (EDITS_ALERTS,),
    DASHBOARD_TYPE: (EDITS_DASHBOARDS,),
    NOTIFICATION_CHANNEL_TYPE: (EDITS_CHANNELS,),
    BUCKET_TYPE: (DEPLOYS_BUCKET,),
    BUCKET_IAM_MEMBER_TYPE: (DEPLOYS_BUCKET,),
    LOG_METRIC_TYPE: (DEPLOYS_METRICS,),
    # Per-secret, not project-wide: the owner of each secret named in `worker_secrets`
    # grants the deployer roles/secretmanager.admin on that secret only (docs/ci.md),
    # so that it may let the runtime account read it.
    SECRET_IAM_MEMBER_TYPE: (),
}
"""Resource types of the main program -> the deployer grants they need."""

PREVIEWER_ROLES: Final[dict[str, str]] = {
    BROWSER_ROLE: "the program's one lookup (organizations.get_project: "
    "resourcemanager.projects.get) during `pulumi preview`, which diffs against the "
    "Pulumi state without refreshing; it reads no resource and can change nothing",
}
"""The previewer's project roles: read-only."""

PREVIEW_EVENT: Final = "pull_request"
"""The only GitHub event whose jobs may impersonate the previewer."""

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
    main_stack: str = "dev"
    """The main program's stack this bootstrap stack prepares (default: its own name)."""
    github_repository: str | None = None
    """OWNER/NAME whose workflows may deploy; None = no GitHub trust (deploys from a
    workstation with your own credentials need only the foundation)."""
    github_repository_id: str | None = None
    github_repository_owner_id: str | None = None
    environment: str = "dev"
    """GitHub environment whose jobs may deploy (default: the bootstrap stack's name)."""
    pool_id: str = "github"
    provider_id: str = "github-actions"
    deployer_account_id: str = "pulumi-deployer"
    previewer_account_id: str = "pulumi-previewer"

    def __post_init__(self) -> None:
        if self.github_repository is None:
            return
        if not _REPOSITORY_RE.match(self.github_repository):
            raise BootstrapConfigError(
                "github_repository",
                self.github_repository,
                "expected OWNER/NAME exactly as GitHub shows it, e.g. my-org/cloud-tasks-pipeline",
            )
        if self.github_repository_id is None or not _OWNER_ID_RE.match(self.github_repository_id):
            raise BootstrapConfigError(
                "github_repository_id",
                self.github_repository_id,
                "expected the repository's numeric id (gh api repos/OWNER/NAME --jq .id): the "
                "trust is pinned to it as well as to the name, which a deleted or renamed "
                "repository leaves free for someone else",
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
        """CEL over the GitHub token's claims: this repository (id, and owner id) only."""
        condition = (
            f"assertion.repository == '{self.github_repository}'"
            f" && assertion.repository_id == '{self.github_repository_id}'"
        )
        if self.github_repository_owner_id:
            condition += f" && assertion.repository_owner_id == '{self.github_repository_owner_id}'"
        return condition


def load_config() -> BootstrapConfig:
    """Read the bootstrap stack's config; raise `BootstrapConfigError` on a bad value."""
    cfg = pulumi.Config()
    project = pulumi.Config("gcp").get("project")
    if not project:
        raise BootstrapConfigError("gcp:project", None, "the target project id is required")
    return BootstrapConfig(
        project=project,
        # One bootstrap stack per target project, named like the main stack and its
        # GitHub environment (dev, staging, prod).
        main_stack=cfg.get("main_stack") or pulumi.get_stack(),
        github_repository=cfg.get("github_repository") or None,
        github_repository_id=cfg.get("github_repository_id") or None,
        github_repository_owner_id=cfg.get("github_repository_owner_id") or None,
        environment=cfg.get("environment") or pulumi.get_stack(),
        pool_id=cfg.get("pool_id") or "github",
        provider_id=cfg.get("provider_id") or "github-actions",
        deployer_account_id=cfg.get("deployer_account_id") or "pulumi-deployer",
        previewer_account_id=cfg.get("previewer_account_id") or "pulumi-previewer",
    )


class GitHubDeployer(pulumi.ComponentResource):
    """Workload Identity pool + GitHub provider + deployer and previewer accounts."""

    pool: gcp.iam.WorkloadIdentityPool
    provider: gcp.iam.WorkloadIdentityPoolProvider
    account: gcp.serviceaccount.Account
    previewer: gcp.serviceaccount.Account
    custom_roles: dict[str, gcp.projects.IAMCustomRole]
    """`CUSTOM_ROLES`, created in the project, by the name `DEPLOYER_GRANTS` uses."""
    principal_set: pulumi.Output[str]
    """`principalSet://.../attribute.environment/ENV`: the jobs of that environment."""
    preview_principal_set: pulumi.Output[str]
    """`principalSet://.../attribute.event_name/pull_request`: pull-request jobs of the repo."""

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
        self,
        name: str,
        config: BootstrapConfig,
        foundation: Foundation,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("bootstrap:index:GitHubDeployer", name, None, opts)
        repository = config.github_repository
        after_iam = pulumi.ResourceOptions(parent=self, depends_on=foundation.api(IAM_API))
        # Project IAM goes through Resource Manager.
        after_crm = pulumi.ResourceOptions(
            parent=self, depends_on=foundation.api(RESOURCE_MANAGER_API)
        )

        self.pool = gcp.iam.WorkloadIdentityPool(
            f"{name}-pool",
            project=config.project,
            workload_identity_pool_id=config.pool_id,
            display_name="GitHub Actions",
            description=f"GitHub Actions OIDC tokens of {repository}",
            opts=after_iam,
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
                "attribute.repository_id": "assertion.repository_id",
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
            description=f"Impersonated by {repository} deploy jobs to run pulumi up.",
            opts=after_iam,
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
            description=f"Impersonated by {repository} pull-request jobs to run pulumi preview.",
            opts=after_iam,
        )
        # Jobs of pull_request events only: not pushes, schedules, workflow_dispatch or
        # issue comments of any branch, which have no reason to preview.
        self.preview_principal_set = self._impersonated_by(
            f"{name}-previewer-wif-user",
            self.previewer,
            f"attribute.event_name/{PREVIEW_EVENT}",
        )
        for role in PREVIEWER_ROLES:
            gcp.projects.IAMMember(
                f"{name}-previewer-{_slug(role)}",
                project=config.project,
                role=role,
                member=self.previewer.member,
                opts=after_crm,
            )

        self.custom_roles = {
            name_in_grants: gcp.projects.IAMCustomRole(
                f"{name}-{role.resource}",
                project=config.project,
                role_id=role.role_id,
                title=role.title,
                description=role.description,
                permissions=list(role.permissions),
                opts=after_iam,
            )
            for name_in_grants, role in CUSTOM_ROLES.items()
        }
        self._grant_deployer(name, config, foundation, after_crm)
        self.register_outputs(
            {
                "workload_identity_provider": self.provider.name,
                "service_account": self.account.email,
                "principal_set": self.principal_set,
                "preview_service_account": self.previewer.email,
            }
        )

    def _grant_deployer(
        self,
        name: str,
        config: BootstrapConfig,
        foundation: Foundation,
        after_crm: pulumi.ResourceOptions,
    ) -> None:
        """Every grant of `DEPLOYER_GRANTS`, each on its scope."""
        member = self.account.member
        child = pulumi.ResourceOptions(parent=self)
        accounts = {"invoker account": foundation.invoker, "runtime account": foundation.runtime}
        for grant in DEPLOYER_GRANTS:
            slug = f"{name}-{_slug(grant.role)}"
            if grant.scope == "project":
                custom = self.custom_roles.get(grant.role)
                role = custom.name if custom is not None else grant.role
                gcp.projects.IAMMember(
                    slug, project=config.project, role=role, member=member, opts=after_crm
                )
            elif grant.scope == "image repository":
                gcp.artifactregistry.RepositoryIamMember(
                    slug,
                    project=foundation.repository.project,
                    location=foundation.repository.location,
                    repository=foundation.repository.repository_id,
                    role=grant.role,
                    member=member,
                    opts=child,
                )
            else:
                gcp.serviceaccount.IAMMember(
                    f"{slug}-on-{grant.scope.split()[0]}",
                    service_account_id=accounts[grant.scope].name,
                    role=grant.role,
                    member=member,
                    opts=child,
                )


def _slug(role: str) -> str:
    return role.rsplit("/", 1)[-1].replace(":", "-").replace(".", "-").lower()
