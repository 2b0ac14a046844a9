"""Identities: the pipeline's service accounts, as the program refers to them, and
the enqueuers' one account-level grant.

The accounts themselves are created by `bootstrap/` (run once per project by an
owner, before the first deploy), so that the deployer never needs project-wide
service-account admin: it holds actAs on these accounts only, and IAM admin on the
invoker only (bootstrap/README.md). Their emails are known before they exist
(`ID@PROJECT.iam.gserviceaccount.com`), so this component declares no lookup.

- the *invoker* account: the identity whose OIDC token every task carries. Its
  only grant, `roles/run.invoker` on the worker service, is declared by
  `WorkerService` next to the service it scopes; the Cloud Tasks service agent's
  right to mint its tokens is bootstrap's.
- the *runtime* account: what the container runs as. Separate from the invoker so
  that a compromised worker cannot invoke itself. Its only role is creating objects
  in the dead-letter bucket (`components.dead_letters`): Cloud Run itself ships the
  container's stdout/stderr to Cloud Logging and records the request metrics,
  neither needs a role on the runtime account
  (https://cloud.google.com/run/docs/logging, "Writing container logs").
- the *enqueuers*: principals from `IdentitiesConfig.enqueuers`, or bootstrap's
  `PREFIX-enqueuer` account. They may act as the invoker
  (`roles/iam.serviceAccountUser` on that account only: creating a task with its
  OIDC token needs `iam.serviceAccounts.actAs` on it,
  https://cloud.google.com/tasks/docs/creating-http-target-tasks). Their queue
  role is declared by `TaskQueue` next to the queue it scopes.
- the *operators*: principals from `IdentitiesConfig.operators`, who run `python -m ops`.
  They act as the invoker too (replaying a dead letter creates a task with its token),
  one grant per principal even when also an enqueuer; their queue roles are `TaskQueue`'s.

It takes its config section, `IdentitiesConfig` (account id prefix, enqueuers, operators),
as is, and the `gcp` section for the project. It deliberately creates no account,
no key and no authoritative binding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components.config import GcpConfig, IdentitiesConfig
from contract.resources import (
    SERVICE_ACCOUNT_MEMBER_PREFIX,
    SERVICE_ACCOUNT_USER_ROLE,
    service_account_email,
    service_account_resource_name,
)

ACT_AS_ROLE = SERVICE_ACCOUNT_USER_ROLE


@dataclass(frozen=True)
class PipelineAccount:
    """A service account bootstrap/ created, named by the program."""

    account_id: str
    email: str
    name: str
    """`projects/P/serviceAccounts/EMAIL`, what account-level IAM takes."""

    @classmethod
    def of(cls, account_id: str, project: str) -> PipelineAccount:
        email = service_account_email(account_id, project)
        return cls(account_id, email, service_account_resource_name(email, project))

    @property
    def member(self) -> str:
        return SERVICE_ACCOUNT_MEMBER_PREFIX + self.email


class Identities(pulumi.ComponentResource):
    """The invoker, runtime and enqueuer identities, and the enqueuers' actAs grants."""

    invoker: PipelineAccount
    runtime: PipelineAccount
    enqueuer: PipelineAccount | None
    """Bootstrap's enqueuer account, used only when config names no enqueuers."""
    enqueuer_grantees: list[tuple[str, str]]
    """(stable slug for resource names, member) of every enqueuer principal."""
    operator_grantees: list[tuple[str, str]]
    """(slug, member) of every operator (`IdentitiesConfig.operators`, `python -m ops`)."""

    def __init__(
        self,
        name: str,
        config: IdentitiesConfig,
        *,
        gcp_config: GcpConfig,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("tasks:index:Identities", name, None, opts)
        project = gcp_config.project
        self.invoker = PipelineAccount.of(config.invoker_account_id, project)
        self.runtime = PipelineAccount.of(config.runtime_account_id, project)

        self.enqueuer = None
        if config.enqueuers:
            self.enqueuer_grantees = [(member_slug(m), m) for m in config.enqueuers]
        else:
            self.enqueuer = PipelineAccount.of(config.enqueuer_account_id, project)
            self.enqueuer_grantees = [("enqueuer", self.enqueuer.member)]

        self.operator_grantees = [(member_slug(m), m) for m in config.operators]

        # actAs on the invoker account only: required to attach its OIDC token to a task
        # (operators too: a replayed dead letter is a task created again). Once per principal.
        act_as = dict(self.enqueuer_grantees)
        for slug, member in self.operator_grantees:
            act_as.setdefault(slug, member)
        for slug, member in act_as.items():
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
                "enqueuer_members": [member for _, member in self.enqueuer_grantees],
                "operator_members": [member for _, member in self.operator_grantees],
            }
        )


def member_slug(member: str) -> str:
    """A resource-name-safe, stable slug of an IAM member.

    Names come from the member rather than its position in the list, so that
    reordering `enqueuers` in config does not replace any grant.
    """
    return re.sub(r"[^a-z0-9]+", "-", member.lower()).strip("-")
