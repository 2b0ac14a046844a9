"""TaskQueue: the Cloud Tasks queue and who may create tasks on it.

It takes its config section, `QueueConfig`, as is: rate limits, retry config
(durations in the provider's "Ns" form), log sampling and state. With
`queue_http_target` on, the queue itself pins every task's host to the worker
(enforce mode ALWAYS) and attaches the invoker's OIDC token with the audience,
so a task created with a wrong URL or no token still reaches the worker
authenticated. Enqueuers get `roles/cloudtasks.enqueuer` on this queue only; operators
(`IdentitiesConfig.operators`, who run `python -m ops`) get, on this queue only, the
viewer (tasks with their bodies), taskDeleter (cancel) and queueAdmin (pause, resume,
purge) roles, and the enqueuer role for replaying dead letters.

The queue keeps Pulumi's auto-naming unless a name is configured: a deleted
queue's name may be blocked for up to 3 days (`queues.delete`,
https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues/delete),
and the random suffix sidesteps that on replacement.

This component deliberately sets no per-task dispatch deadline (`dispatch_deadline`
of `QueueConfig` is a task field, set by whoever enqueues; the pipeline exports it).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

import pulumi
import pulumi_gcp as gcp

from components.config import GcpConfig, QueueConfig
from contract.durations import format_duration
from contract.resources import CLOUDTASKS_ENQUEUER_ROLE, OPERATOR_QUEUE_ROLES

# CreateTask only. Not roles/cloudtasks.viewer: it includes cloudtasks.tasks.fullView, every
# task's body; the post-deploy smoke test polls GetTask as the deployer (cloudtasks.admin).
ENQUEUER_ROLES = (CLOUDTASKS_ENQUEUER_ROLE,)
# Operators read bodies on purpose (viewer holds fullView) and replay dead letters (enqueuer).
OPERATOR_ROLES = (*OPERATOR_QUEUE_ROLES, *ENQUEUER_ROLES)


def url_host(url: str) -> str:
    """The host of an https URL (what the queue pins tasks to)."""
    host = urlsplit(url).hostname
    if not host:
        raise ValueError(f"cannot take a host from {url!r}")
    return host


class TaskQueue(pulumi.ComponentResource):
    """The queue and its enqueuer grants."""

    queue: gcp.cloudtasks.Queue
    path: pulumi.Output[str]
    """`projects/P/locations/L/queues/Q`, the parent of every task."""

    def __init__(
        self,
        name: str,
        config: QueueConfig,
        *,
        gcp_config: GcpConfig,
        service_url: pulumi.Input[str],
        audience: pulumi.Input[str],
        invoker_email: pulumi.Input[str],
        enqueuers: Sequence[tuple[str, pulumi.Input[str]]],
        operators: Sequence[tuple[str, pulumi.Input[str]]] = (),
        depends_on: Sequence[pulumi.Resource] = (),
        protect: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`enqueuers`: (slug, member) of each principal allowed to create tasks;
        `operators`: (slug, member) of each principal who operates the queue;
        `depends_on`: anything the queue must wait for (bootstrap/ has enabled the
        API and let the Cloud Tasks agent mint the invoker's tokens); `protect`: the
        engine refuses to delete the queue (a deleted queue takes its tasks with it
        and its name may not be reusable for up to 3 days,
        https://cloud.google.com/tasks/docs/reference/rpc/google.cloud.tasks.v2#deletequeuerequest)."""
        super().__init__("tasks:index:TaskQueue", name, None, opts)

        http_target = None
        if config.queue_http_target:
            http_target = gcp.cloudtasks.QueueHttpTargetArgs(
                http_method="POST",
                uri_override=gcp.cloudtasks.QueueHttpTargetUriOverrideArgs(
                    scheme="HTTPS",
                    host=pulumi.Output.from_input(service_url).apply(url_host),
                    uri_override_enforce_mode="ALWAYS",
                ),
                oidc_token=gcp.cloudtasks.QueueHttpTargetOidcTokenArgs(
                    service_account_email=invoker_email,
                    audience=audience,
                ),
            )

        self.queue = gcp.cloudtasks.Queue(
            f"{name}-queue",
            name=config.queue_name,
            project=gcp_config.project,
            location=gcp_config.region,
            rate_limits=gcp.cloudtasks.QueueRateLimitsArgs(
                max_dispatches_per_second=config.max_dispatches_per_second,
                max_concurrent_dispatches=config.max_concurrent_dispatches,
            ),
            retry_config=gcp.cloudtasks.QueueRetryConfigArgs(
                max_attempts=config.max_attempts,
                min_backoff=format_duration(config.min_backoff),
                max_backoff=format_duration(config.max_backoff),
                max_doublings=config.max_doublings,
                max_retry_duration=format_duration(config.max_retry_duration),
            ),
            stackdriver_logging_config=gcp.cloudtasks.QueueStackdriverLoggingConfigArgs(
                sampling_ratio=config.log_sampling_ratio
            ),
            desired_state="PAUSED" if config.queue_paused else "RUNNING",
            http_target=http_target,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on), protect=protect),
        )
        self.path = self.queue.id

        # One grant per (principal, role): an operator who is also an enqueuer gets the
        # enqueuer role once, under the name it has as an enqueuer.
        grants: dict[tuple[str, str], pulumi.Input[str]] = {}
        for grantees, roles in ((enqueuers, ENQUEUER_ROLES), (operators, OPERATOR_ROLES)):
            for slug, member in grantees:
                for role in roles:
                    grants.setdefault((slug, role), member)
        for (slug, role), member in grants.items():
            gcp.cloudtasks.QueueIamMember(
                f"{name}-{slug}-{role.rsplit('.', 1)[1]}",
                project=gcp_config.project,
                location=gcp_config.region,
                name=self.queue.name,
                role=role,
                member=member,
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.register_outputs({"path": self.path, "name": self.queue.name})
