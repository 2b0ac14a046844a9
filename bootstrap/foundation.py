"""Foundation: what one stack of the pipeline needs before its first deploy.

Created once per project by an owner, minutes before the first `pulumi up` of the
main program, so that the deployer needs no power over the project itself:

- the APIs the pipeline calls. Enablement is eventually consistent (a
  `projects.Service` can finish before the API accepts calls), so the main program
  never enables an API and uses it in the same run; here nothing else of the
  pipeline runs until the next program does;
- the Cloud Tasks service agent, created up front (agents are otherwise created
  lazily, and a grant to a missing agent fails), with
  `roles/iam.serviceAccountOpenIdTokenCreator` on the invoker account only: an
  agent created on request gets no role (https://cloud.google.com/iam/docs/create-service-agents),
  and without this Cloud Tasks cannot mint the invoker's OIDC token and no task
  reaches the worker. Narrower than the agent's project-wide
  `roles/cloudtasks.serviceAgent`;
- the pipeline's service accounts (invoker, runtime, enqueuer), named from the
  main stack's `account_prefix`, so that the deployer gets actAs on these
  accounts only instead of project-wide service-account admin;
- the Artifact Registry repository the worker image is pushed to, with a cleanup
  policy (every deploy pushes a digest; untagged ones older than
  `UNTAGGED_IMAGE_TTL` go, the `KEEP_RECENT_IMAGES` newest stay for rollbacks).

It takes `MainStack` (names read from the main stack's file). It deliberately
grants nothing to the deployer (`bootstrap.deployer` does, on these resources).
"""

from __future__ import annotations

from typing import Final

import pulumi
import pulumi_gcp as gcp

from bootstrap.main_stack import MainStack
from contract.resources import (
    ARTIFACT_REGISTRY_API,
    CLOUD_TASKS_API,
    CLOUD_TRACE_AGENT_ROLE,
    CLOUD_TRACE_API,
    IAM_API,
    OPENID_TOKEN_CREATOR_ROLE,
    PIPELINE_APIS,
    RESOURCE_MANAGER_API,
    TELEMETRY_API,
)

# APIs the GitHub trust needs on top: STS exchanges GitHub's token (Workload Identity
# Federation); IAM, IAM Credentials and Resource Manager are the pipeline's too.
TRUST_APIS: Final = ("sts.googleapis.com",)
# Cloud Trace and its OTLP (telemetry) API: only used when the stack exports spans, and
# free to enable.
TRACE_APIS: Final = (CLOUD_TRACE_API, TELEMETRY_API)
FOUNDATION_APIS: Final = (*PIPELINE_APIS, *TRUST_APIS, *TRACE_APIS)

UNTAGGED_IMAGE_TTL: Final = "604800s"  # 7 days: a deploy's old digest, kept for a week
KEEP_RECENT_IMAGES: Final = 5  # whatever their tags, for rollbacks


class Foundation(pulumi.ComponentResource):
    """APIs, the Cloud Tasks agent and its token grant, the accounts, the repository."""

    services: dict[str, gcp.projects.Service]
    tasks_agent: gcp.projects.ServiceIdentity
    invoker: gcp.serviceaccount.Account
    runtime: gcp.serviceaccount.Account
    enqueuer: gcp.serviceaccount.Account
    agent_token_grant: gcp.serviceaccount.IAMMember
    trace_agent_grant: gcp.projects.IAMMember | None
    """roles/cloudtrace.agent for the runtime account, when the stack exports spans."""
    repository: gcp.artifactregistry.Repository

    def __init__(
        self, name: str, stack: MainStack, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("bootstrap:index:Foundation", name, None, opts)
        self.services = {
            api: gcp.projects.Service(
                f"{name}-{api.split('.')[0]}",
                project=stack.project,
                service=api,
                # Other workloads of the project may use them.
                disable_on_destroy=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for api in FOUNDATION_APIS
        }
        self.tasks_agent = gcp.projects.ServiceIdentity(
            f"{name}-tasks-agent",
            project=stack.project,
            service=CLOUD_TASKS_API,
            opts=self._after(CLOUD_TASKS_API),
        )
        self.invoker = self._account(
            f"{name}-invoker",
            stack,
            stack.identities.invoker_account_id,
            "Cloud Tasks invoker (OIDC identity of tasks)",
            "Tasks carry this account's ID token; its one grant: run.invoker on the worker.",
        )
        self.runtime = self._account(
            f"{name}-runtime",
            stack,
            stack.identities.runtime_account_id,
            "Task worker runtime",
            "The worker runs as this account. No role: Cloud Run ships its logs itself.",
        )
        self.enqueuer = self._account(
            f"{name}-enqueuer",
            stack,
            stack.identities.enqueuer_account_id,
            "Task enqueuer",
            "Creates tasks when the stack names no other enqueuers.",
        )
        self.agent_token_grant = gcp.serviceaccount.IAMMember(
            f"{name}-tasks-agent-mints-invoker-tokens",
            service_account_id=self.invoker.name,
            role=OPENID_TOKEN_CREATOR_ROLE,
            member=self.tasks_agent.member,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # The worker's span export (trace_export) writes to Cloud Trace's OTLP API as the
        # runtime account: roles/cloudtrace.agent (telemetry.traces.write), nothing more.
        self.trace_agent_grant = None
        if stack.trace_export:
            self.trace_agent_grant = gcp.projects.IAMMember(
                f"{name}-runtime-trace-agent",
                project=stack.project,
                role=CLOUD_TRACE_AGENT_ROLE,
                member=self.runtime.member,
                opts=self._after(RESOURCE_MANAGER_API, TELEMETRY_API),
            )
        self.repository = gcp.artifactregistry.Repository(
            f"{name}-repository",
            project=stack.project,
            location=stack.region,
            repository_id=stack.repository_id,
            format="DOCKER",
            description="Images of the Cloud Tasks worker",
            cleanup_policy_dry_run=False,
            cleanup_policies=[
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-untagged-after-a-week",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="UNTAGGED", older_than=UNTAGGED_IMAGE_TTL
                    ),
                ),
                # KEEP wins over DELETE (https://cloud.google.com/artifact-registry/docs/repositories/cleanup-policy).
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id=f"keep-{KEEP_RECENT_IMAGES}-most-recent",
                    action="KEEP",
                    most_recent_versions=gcp.artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                        keep_count=KEEP_RECENT_IMAGES
                    ),
                ),
            ],
            opts=self._after(ARTIFACT_REGISTRY_API),
        )
        self.register_outputs(
            {
                "invoker_email": self.invoker.email,
                "runtime_email": self.runtime.email,
                "enqueuer_email": self.enqueuer.email,
                "tasks_agent_email": self.tasks_agent.email,
                "repository": self.repository.name,
            }
        )

    def _after(self, *apis: str) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, depends_on=[self.services[api] for api in apis])

    def _account(
        self, name: str, stack: MainStack, account_id: str, display: str, description: str
    ) -> gcp.serviceaccount.Account:
        return gcp.serviceaccount.Account(
            name,
            project=stack.project,
            account_id=account_id,
            display_name=display,
            description=f"{description} (stack {stack.stack})",
            opts=self._after(IAM_API),
        )

    def api(self, *apis: str) -> list[pulumi.Resource]:
        """The Service resources of the given APIs, for `depends_on`."""
        return [self.services[api] for api in apis]
