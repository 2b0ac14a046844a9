"""TaskPipeline: the whole pipeline composed from its parts, and its stack outputs.

Order of declaration follows the dependencies: the identities, then the worker
(it runs as the runtime account and admits the invoker) and the queues, one
`TaskQueue` per queue key of the config (`PipelineConfig.queues`), each with its
own settings and enqueuer grants (the invoker and its run.invoker grant are
shared).

Two wirings, chosen by `PipelineConfig.routed`:

- a single-queue stack (no `queues`, no `routes`: every stack file of the
  single-queue version) keeps exactly the wiring it had, so its plan and its
  deployed resources do not change: the worker first, then the queue, whose
  queue-level target follows the service's own `uri`;
- a stack with several queues or routes gives the worker `TASKS_QUEUES` (queue
  key -> queue id) and `TASKS_ROUTES` (task type -> queue key), so it can refuse a
  task that arrived on the wrong queue. The queue ids exist only once the queues
  do, so the queues come first, and their queue-level target cannot wait for the
  service's `uri` (a cycle): it is the deterministic URL below, which Cloud Run
  serves as well, known before the service exists.

The dead-letter bucket comes before the worker: the worker is told its name and
every queue's retry policy (built once, by `queue_retry_policies`), so that it
can keep a task on its last attempt instead of letting Cloud Tasks drop it.

What a project needs before the first deploy is `bootstrap/`'s, run once by an
owner: the APIs enabled (enablement is eventually consistent, so the program
never enables an API and uses it in the same run), the Cloud Tasks service
agent allowed to mint the invoker's tokens, the pipeline's service accounts and
the image repository. The deployer then holds only narrow, mostly per-resource
roles (bootstrap/README.md).

The audience is computed here once and handed to both the worker (env
TASKS_AUDIENCE) and the queue (OIDC audience), and exported as `audience`: it is
the custom audience when configured, otherwise the deterministic URL
`https://SERVICE-PROJECT_NUMBER.REGION.run.app`, known before the service exists
(the service's own `uri` output cannot be given to the service: a cycle).

Each component takes its own section of the validated `PipelineConfig` as is;
this module only passes each one its section and the outputs of the others.
It deliberately reads no config (`components.loading` does, once) and holds
no rule about a config value (`components.config` does).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_gcp as gcp

from components.config import PipelineConfig, QueueConfig
from components.dead_letters import DeadLetterBucket, retry_policies_env
from components.identities import Identities
from components.monitoring import Operations
from components.queue import TaskQueue
from components.worker import WorkerService
from contract.durations import format_duration
from contract.names import (
    CLOUD_TRACE_OTLP_URL,
    OUTPUT_AUDIENCE,
    OUTPUT_DEAD_LETTER_BUCKET,
    OUTPUT_DISPATCH_DEADLINE,
    OUTPUT_DISPATCH_DEADLINES,
    OUTPUT_INVOKER_EMAIL,
    OUTPUT_LOCATION,
    OUTPUT_PROJECT,
    OUTPUT_QUEUE,
    OUTPUT_QUEUES,
    OUTPUT_ROUTES,
    OUTPUT_SERVICE_URL,
    WORKER_ENV_DEAD_LETTER_BUCKET,
    WORKER_ENV_QUEUES,
    WORKER_ENV_RETRY_POLICIES,
    WORKER_ENV_ROUTES,
    WORKER_ENV_TRACE_EXPORT,
)
from contract.retry_policy import RetryPolicy
from contract.routing import DEFAULT_QUEUE_KEY


def queue_retry_policies(config: PipelineConfig) -> dict[str, RetryPolicy]:
    """The retry policy of each queue key, as the queues are created with it: the ONE
    place the worker's `TASKS_RETRY_POLICIES` comes from."""
    return {
        key: RetryPolicy(
            max_attempts=queue.max_attempts,
            min_backoff=queue.min_backoff,
            max_backoff=queue.max_backoff,
            max_doublings=queue.max_doublings,
            max_retry_duration=queue.max_retry_duration,
        )
        for key, queue in config.queues.items()
    }


def deterministic_service_url(service_name: str, project_number: str, region: str) -> str:
    """The run.app URL Cloud Run serves for a service, computable before it exists
    (https://cloud.google.com/run/docs/triggering/https-request, "Deterministic URL")."""
    return f"https://{service_name}-{project_number}.{region}.run.app"


class TaskPipeline(pulumi.ComponentResource):
    """Queues -> OIDC-authenticated push -> private Cloud Run worker."""

    identities: Identities
    dead_letters: DeadLetterBucket
    dropped_tasks: gcp.logging.Metric
    worker: WorkerService
    queues: dict[str, TaskQueue]
    """One `TaskQueue` per queue key, `default` first."""
    tasks: TaskQueue
    """The `default` queue (the `queue` output)."""
    operations: Operations
    audience: pulumi.Output[str]
    outputs: dict[str, pulumi.Output[Any]]
    """The stack outputs, keyed by the names in contract.names."""

    def __init__(
        self,
        name: str,
        config: PipelineConfig,
        *,
        stack: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`stack`: the stack name, which tags the built image."""
        super().__init__("tasks:index:TaskPipeline", name, None, opts)
        self._name = name
        where = config.gcp
        child = pulumi.ResourceOptions(parent=self)

        self.identities = Identities(
            f"{name}-identities", config.identities, gcp_config=where, opts=child
        )

        self.audience = self._audience(config)

        # Where the worker keeps dead tasks; it writes there as the runtime account.
        self.dead_letters = DeadLetterBucket(
            f"{name}-dead-letters",
            config.dead_letters,
            gcp_config=where,
            service_name=config.worker.service_name,
            runtime_member=self.identities.runtime.member,
            protect=config.worker.deletion_protection,
            operators=config.identities.operators,
            opts=child,
        )

        # The module docstring says why there are two wirings.
        if config.routed:
            self.queues = self._queues(config, target_url=self._deterministic_url(config))
            self.worker = self._worker(config, stack, routing_env=self._routing_env(config))
        else:
            self.worker = self._worker(config, stack, routing_env=())
            self.queues = self._queues(config, target_url=self.worker.url)
        self.tasks = self.queues[DEFAULT_QUEUE_KEY]

        # Every queue of the stack, by queue key: the one mapping the alerts, the
        # dashboard and the cost preview read.
        watched = {key: (self.queues[key].path, queue) for key, queue in config.queues.items()}
        self.operations = Operations(
            f"{name}-operations",
            config.operations,
            gcp_config=where,
            queues=watched,
            service_name=config.worker.service_name,
            opts=child,
        )

        self.outputs = self._outputs(config)
        self.register_outputs(dict(self.outputs))

    def _worker(
        self,
        config: PipelineConfig,
        stack: str,
        *,
        routing_env: Sequence[tuple[str, pulumi.Input[str]]],
    ) -> WorkerService:
        return WorkerService(
            f"{self._name}-worker",
            config.worker,
            gcp_config=config.gcp,
            image_tag=stack,
            runtime_email=self.identities.runtime.email,
            invoker_email=self.identities.invoker.email,
            invoker_member=self.identities.invoker.member,
            audience=self.audience,
            program_envs={
                **dict(routing_env),
                WORKER_ENV_DEAD_LETTER_BUCKET: self.dead_letters.name,
                WORKER_ENV_RETRY_POLICIES: retry_policies_env(queue_retry_policies(config)),
                **(
                    {WORKER_ENV_TRACE_EXPORT: CLOUD_TRACE_OTLP_URL}
                    if config.operations.trace_export
                    else {}
                ),
            },
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _queues(
        self, config: PipelineConfig, *, target_url: pulumi.Input[str]
    ) -> dict[str, TaskQueue]:
        """One TaskQueue per key. `default` keeps the names it always had (so adding a
        queue never replaces it); the others are named after their key."""
        return {
            key: self._queue(
                f"{self._name}-queue" if key == DEFAULT_QUEUE_KEY else f"{self._name}-queue-{key}",
                queue,
                config,
                target_url,
            )
            for key, queue in config.queues.items()
        }

    def _queue(
        self, name: str, queue: QueueConfig, config: PipelineConfig, target_url: pulumi.Input[str]
    ) -> TaskQueue:
        return TaskQueue(
            name,
            queue,
            gcp_config=config.gcp,
            service_url=target_url,
            audience=self.audience,
            invoker_email=self.identities.invoker.email,
            enqueuers=self.identities.enqueuer_grantees,
            operators=self.identities.operator_grantees,
            # One switch protects the stack's stateful parts: the service (Cloud Run's
            # own flag) and the queues, whose tasks a delete would take with them.
            protect=config.worker.deletion_protection,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _routing_env(self, config: PipelineConfig) -> list[tuple[str, pulumi.Input[str]]]:
        """TASKS_QUEUES ({queue key: queue id}) and TASKS_ROUTES ({task type: queue key})."""
        keys = list(self.queues)
        ids = pulumi.Output.all(*(self.queues[key].queue.name for key in keys)).apply(
            lambda names: json.dumps(dict(zip(keys, names, strict=True)), separators=(",", ":"))
        )
        return [
            (WORKER_ENV_QUEUES, ids),
            (WORKER_ENV_ROUTES, json.dumps(config.routes, separators=(",", ":"))),
        ]

    def _outputs(self, config: PipelineConfig) -> dict[str, pulumi.Output[Any]]:
        where = config.gcp
        keys = list(self.queues)
        paths = pulumi.Output.all(*(self.queues[key].path for key in keys)).apply(
            lambda values: dict(zip(keys, values, strict=True))
        )
        return {
            OUTPUT_PROJECT: pulumi.Output.from_input(where.project),
            OUTPUT_LOCATION: pulumi.Output.from_input(where.region),
            OUTPUT_QUEUE: self.tasks.path,
            OUTPUT_SERVICE_URL: self.worker.url,
            OUTPUT_AUDIENCE: self.audience,
            OUTPUT_INVOKER_EMAIL: pulumi.Output.from_input(self.identities.invoker.email),
            # The deadline request_timeout was checked against; the enqueue helper gives
            # it to every task it creates (Cloud Tasks' own default is 10 min).
            OUTPUT_DISPATCH_DEADLINE: pulumi.Output.from_input(
                format_duration(config.queue.dispatch_deadline)
            ),
            OUTPUT_DEAD_LETTER_BUCKET: self.dead_letters.name,
            OUTPUT_QUEUES: paths,
            OUTPUT_ROUTES: pulumi.Output.from_input(config.routes),
            OUTPUT_DISPATCH_DEADLINES: pulumi.Output.from_input(
                {key: format_duration(q.dispatch_deadline) for key, q in config.queues.items()}
            ),
        }

    def _audience(self, config: PipelineConfig) -> pulumi.Output[str]:
        """The custom audience when configured, otherwise the deterministic URL."""
        custom = config.worker.custom_audience
        if custom is not None:
            return pulumi.Output.from_input(custom)
        return self._deterministic_url(config)

    def _deterministic_url(self, config: PipelineConfig) -> pulumi.Output[str]:
        where = config.gcp
        project = gcp.organizations.get_project_output(
            project_id=where.project, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        service_name = config.worker.service_name
        return project.number.apply(
            lambda number: deterministic_service_url(service_name, number, where.region)
        )
