"""TaskPipeline: the whole pipeline composed from its parts, and its stack outputs.

Order of declaration follows the dependencies: APIs and the Cloud Tasks agent,
then the identities, then the worker (it needs the runtime and invoker
accounts), then the queue (it needs the worker's URL for its queue-level target).

The audience is computed here once and handed to both the worker (env
TASKS_AUDIENCE) and the queue (OIDC audience), and exported as `audience`: it is
the custom audience when configured, otherwise the deterministic URL
`https://SERVICE-PROJECT_NUMBER.REGION.run.app`, known before the service exists
(the service's own `uri` output cannot be given to the service: a cycle).

This module deliberately reads no config: `components.config` does, once.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components.config import PipelineConfig
from components.identities import Identities, IdentitiesArgs
from components.platform import (
    ARTIFACT_REGISTRY_API,
    CLOUD_RUN_API,
    CLOUD_TASKS_API,
    IAM_API,
    IAM_CREDENTIALS_API,
    PIPELINE_APIS,
    RESOURCE_MANAGER_API,
    Platform,
    PlatformArgs,
)
from components.queue import TaskQueue, TaskQueueArgs
from components.worker import WorkerService, WorkerServiceArgs
from contract.names import (
    OUTPUT_AUDIENCE,
    OUTPUT_DISPATCH_DEADLINE,
    OUTPUT_INVOKER_EMAIL,
    OUTPUT_LOCATION,
    OUTPUT_PROJECT,
    OUTPUT_QUEUE,
    OUTPUT_SERVICE_URL,
)


def deterministic_service_url(service_name: str, project_number: str, region: str) -> str:
    """The run.app URL Cloud Run serves for a service, computable before it exists."""
    return f"https://{service_name}-{project_number}.{region}.run.app"


@dataclass(frozen=True)
class TaskPipelineArgs:
    config: PipelineConfig
    stack: str
    """Stack name; tags the built image."""


class TaskPipeline(pulumi.ComponentResource):
    """Queue -> OIDC-authenticated push -> private Cloud Run worker."""

    platform: Platform
    identities: Identities
    worker: WorkerService
    tasks: TaskQueue
    audience: pulumi.Output[str]
    outputs: dict[str, pulumi.Output[str]]
    """The stack outputs, keyed by the names in contract.names."""

    def __init__(
        self, name: str, args: TaskPipelineArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tasks:index:TaskPipeline", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)

        # The registry API is only needed when the stack builds the image.
        apis = (
            PIPELINE_APIS
            if cfg.image is None
            else tuple(api for api in PIPELINE_APIS if api != ARTIFACT_REGISTRY_API)
        )
        self.platform = Platform(f"{name}-platform", PlatformArgs(cfg.project, apis), child)

        self.identities = Identities(
            f"{name}-identities",
            IdentitiesArgs(
                project=cfg.project,
                invoker_account_id=cfg.invoker_account_id,
                runtime_account_id=cfg.runtime_account_id,
                enqueuer_account_id=cfg.enqueuer_account_id,
                enqueuers=cfg.enqueuers,
                depends_on=tuple(self.platform.api(IAM_API)),
                project_iam_depends_on=tuple(self.platform.api(RESOURCE_MANAGER_API)),
            ),
            child,
        )

        if cfg.custom_audience is not None:
            self.audience = pulumi.Output.from_input(cfg.custom_audience)
        else:
            project = gcp.organizations.get_project_output(
                project_id=cfg.project,
                opts=pulumi.InvokeOutputOptions(
                    parent=self, depends_on=self.platform.api(RESOURCE_MANAGER_API)
                ),
            )
            self.audience = project.number.apply(
                lambda number: deterministic_service_url(cfg.service_name, number, cfg.region)
            )

        self.worker = WorkerService(
            f"{name}-worker",
            WorkerServiceArgs(
                project=cfg.project,
                region=cfg.region,
                service_name=cfg.service_name,
                image_tag=args.stack,
                runtime_email=self.identities.runtime.email,
                invoker_email=self.identities.invoker.email,
                invoker_member=self.identities.invoker.member,
                audience=self.audience,
                custom_audience=cfg.custom_audience,
                ingress=cfg.ingress,
                request_timeout_s=cfg.request_timeout,
                request_concurrency=cfg.request_concurrency,
                min_instances=cfg.min_instances,
                max_instances=cfg.max_instances,
                cpu=cfg.cpu,
                memory=cfg.memory,
                deletion_protection=cfg.deletion_protection,
                prebuilt_image=cfg.image,
                repository_id=cfg.repository_id,
                run_api=tuple(self.platform.api(CLOUD_RUN_API)),
                registry_api=tuple(
                    self.platform.api(ARTIFACT_REGISTRY_API) if cfg.image is None else ()
                ),
            ),
            child,
        )

        self.tasks = TaskQueue(
            f"{name}-queue",
            TaskQueueArgs(
                project=cfg.project,
                region=cfg.region,
                queue_name=cfg.queue_name,
                max_dispatches_per_second=cfg.max_dispatches_per_second,
                max_concurrent_dispatches=cfg.max_concurrent_dispatches,
                max_attempts=cfg.max_attempts,
                min_backoff=cfg.duration("min_backoff"),
                max_backoff=cfg.duration("max_backoff"),
                max_doublings=cfg.max_doublings,
                max_retry_duration=cfg.duration("max_retry_duration"),
                log_sampling_ratio=cfg.log_sampling_ratio,
                paused=cfg.queue_paused,
                http_target=cfg.queue_http_target,
                service_url=self.worker.url,
                audience=self.audience,
                invoker_email=self.identities.invoker.email,
                enqueuers=tuple(self.identities.enqueuer_grantees),
                # Cloud Tasks mints the invoker's OIDC tokens through IAM Credentials.
                depends_on=(
                    *self.platform.api(CLOUD_TASKS_API, IAM_CREDENTIALS_API),
                    self.platform.tasks_agent,
                ),
            ),
            child,
        )

        self.outputs = {
            OUTPUT_PROJECT: pulumi.Output.from_input(cfg.project),
            OUTPUT_LOCATION: pulumi.Output.from_input(cfg.region),
            OUTPUT_QUEUE: self.tasks.path,
            OUTPUT_SERVICE_URL: self.worker.url,
            OUTPUT_AUDIENCE: self.audience,
            OUTPUT_INVOKER_EMAIL: self.identities.invoker.email,
            # The deadline request_timeout was checked against; the enqueue helper gives
            # it to every task it creates (Cloud Tasks' own default is 10 min).
            OUTPUT_DISPATCH_DEADLINE: pulumi.Output.from_input(f"{cfg.dispatch_deadline}s"),
        }
        self.register_outputs(dict(self.outputs))
