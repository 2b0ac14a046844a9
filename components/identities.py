"""Identities: the service accounts of the pipeline and their project-free grants.

- the *invoker* account: the identity whose OIDC token every task carries. Its
  only grant, `roles/run.invoker` on the worker service, is declared by
  `WorkerService` next to the service it scopes.
- the *runtime* account: what the container runs as. Separate from the invoker
  so that a compromised worker cannot invoke itself; it only writes logs and
  metrics (the only project-level grants of the whole program, non-authoritative).
- the *enqueuers*: principals from `IdentitiesConfig.enqueuers`, or an
  `enqueuer` account the stack creates. They may act as the invoker
  (`roles/iam.serviceAccountUser` on that account only: creating a task with its
  OIDC token needs `iam.serviceAccounts.actAs` on it,
  https://cloud.google.com/tasks/docs/creating-http-target-tasks). Their queue
  roles are declared by `TaskQueue` next to the queue they scope.

It takes its config section, `IdentitiesConfig` (account id prefix, enqueuers),
as is, and the `gcp` section for the project.

This component deliberately creates no keys (use workload identity or
impersonation) and no authoritative bindings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pulumi
import pulumi_gcp as gcp

from components.config import GcpConfig, IdentitiesConfig
from contract.resources import (
    LOG_WRITER_ROLE,
    METRIC_WRITER_ROLE,
    OPENID_TOKEN_CREATOR_ROLE,
    SERVICE_ACCOUNT_USER_ROLE,
)

RUNTIME_PROJECT_ROLES = (LOG_WRITER_ROLE, METRIC_WRITER_ROLE)
ACT_AS_ROLE = SERVICE_ACCOUNT_USER_ROLE


class Identities(pulumi.ComponentResource):
    """Invoker, runtime and enqueuer identities."""

    invoker: gcp.serviceaccount.Account
    runtime: gcp.serviceaccount.Account
    enqueuer: gcp.serviceaccount.Account | None
    """Only when config names no enqueuers."""
    enqueuer_members: pulumi.Output[list[str]]
    """`member` strings (`serviceAccount:...`, `group:...`) allowed to create tasks."""
    enqueuer_grantees: list[tuple[str, pulumi.Input[str]]]
    """(stable slug for resource names, member) of every enqueuer principal."""

    def __init__(
        self,
        name: str,
        config: IdentitiesConfig,
        *,
        gcp_config: GcpConfig,
        tasks_agent_member: pulumi.Input[str],
        depends_on: Sequence[pulumi.Resource] = (),
        project_iam_depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`tasks_agent_member`: the Cloud Tasks service agent, which mints the
        invoker's ID tokens; `depends_on`: the IAM API service (and anything else
        accounts must wait for); `project_iam_depends_on`: the Resource Manager API
        service, which project IAM goes through."""
        super().__init__("tasks:index:Identities", name, None, opts)
        project = gcp_config.project
        after_api = pulumi.ResourceOptions(parent=self, depends_on=list(depends_on))

        self.invoker = gcp.serviceaccount.Account(
            f"{name}-invoker",
            project=project,
            account_id=config.invoker_account_id,
            display_name="Cloud Tasks invoker (OIDC identity of tasks)",
            description="Tasks carry this account's ID token; its one grant: run.invoker.",
            opts=after_api,
        )
        self.runtime = gcp.serviceaccount.Account(
            f"{name}-runtime",
            project=project,
            account_id=config.runtime_account_id,
            display_name="Task worker runtime",
            description="The worker runs as this account; it writes logs and metrics only.",
            opts=after_api,
        )
        for role in RUNTIME_PROJECT_ROLES:
            gcp.projects.IAMMember(
                f"{name}-runtime-{role.rsplit('.', 1)[1].lower()}",
                project=project,
                role=role,
                member=self.runtime.member,
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(project_iam_depends_on)),
            )

        self.enqueuer = None
        if config.enqueuers:
            self.enqueuer_members = pulumi.Output.from_input(list(config.enqueuers))
            self.enqueuer_grantees = [(member_slug(m), m) for m in config.enqueuers]
        else:
            self.enqueuer = gcp.serviceaccount.Account(
                f"{name}-enqueuer",
                project=project,
                account_id=config.enqueuer_account_id,
                display_name="Task enqueuer",
                description="Creates tasks on the queue and attaches the invoker's OIDC token.",
                opts=after_api,
            )
            self.enqueuer_members = self.enqueuer.member.apply(lambda member: [member])
            self.enqueuer_grantees = [("enqueuer", self.enqueuer.member)]

        # The Cloud Tasks service agent mints the invoker's ID token for every attempt.
        # An agent created on request (gcp.projects.ServiceIdentity) gets no role
        # (https://cloud.google.com/iam/docs/create-service-agents), so grant exactly
        # that: token creation on the invoker account only, not the agent's
        # project-wide roles/cloudtasks.serviceAgent
        # (https://cloud.google.com/tasks/docs/creating-http-target-tasks#sa).
        self.agent_token_grant = gcp.serviceaccount.IAMMember(
            f"{name}-tasks-agent-mints-invoker-tokens",
            service_account_id=self.invoker.name,
            role=OPENID_TOKEN_CREATOR_ROLE,
            member=tasks_agent_member,
            opts=pulumi.ResourceOptions(parent=self),
        )

        # actAs on the invoker account only: required to attach its OIDC token to a task.
        for slug, member in self.enqueuer_grantees:
            gcp.serviceaccount.IAMMember(
                f"{name}-{slug}-actas-invoker",
                service_account_id=self.invoker.name,
                role=ACT_AS_ROLE,
                member=member,
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.register_outputs(
            {
                "invoker_email": self.invoker.email,
                "runtime_email": self.runtime.email,
                "enqueuer_members": self.enqueuer_members,
            }
        )


def member_slug(member: str) -> str:
    """A resource-name-safe, stable slug of an IAM member.

    Names come from the member rather than its position in the list, so that
    reordering `enqueuers` in config does not replace any grant.
    """
    return re.sub(r"[^a-z0-9]+", "-", member.lower()).strip("-")
