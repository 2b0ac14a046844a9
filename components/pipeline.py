"""TaskPipeline: the whole pipeline composed from its parts, and its stack outputs.

Order of declaration follows the dependencies: the identities, the dead-letter
bucket (the worker is told its name and every queue's retry policy, built once by
`queue_retry_policies`, so it can keep a task on its last attempt), then the worker
(it runs as the runtime account and admits the invoker), then the queue (it
needs the worker's URL for its queue-level target).

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

import pulumi
import pulumi_gcp as gcp

from components.config import PipelineConfig
from components.dead_letters import DeadLetterBucket, retry_policies_env
from components.dropped_tasks import dropped_tasks_metric
from components.identities import Identities
from components.queue import TaskQueue
from components.worker import WorkerService
from contract.durations import format_duration
from contract.names import (
    OUTPUT_AUDIENCE,
    OUTPUT_DEAD_LETTER_BUCKET,
    OUTPUT_DISPATCH_DEADLINE,
    OUTPUT_INVOKER_EMAIL,
    OUTPUT_LOCATION,
    OUTPUT_PROJECT,
    OUTPUT_QUEUE,
    OUTPUT_SERVICE_URL,
    WORKER_ENV_DEAD_LETTER_BUCKET,
    WORKER_ENV_RETRY_POLICIES,
)
from contract.retry_policy import RetryPolicy
from contract.routing import DEFAULT_QUEUE_KEY


def queue_retry_policies(config: PipelineConfig) -> dict[str, RetryPolicy]:
    """The retry policy of each queue key, as the queues are created with it: the ONE
    place the worker's `TASKS_RETRY_POLICIES` comes from (one queue today, `default`)."""
    queue = config.queue
    return {
        DEFAULT_QUEUE_KEY: RetryPolicy(
            max_attempts=queue.max_attempts,
            min_backoff=queue.min_backoff,
            max_backoff=queue.max_backoff,
            max_doublings=queue.max_doublings,
            max_retry_duration=queue.max_retry_duration,
        )
    }


def deterministic_service_url(service_name: str, project_number: str, region: str) -> str:
    """The run.app URL Cloud Run serves for a service, computable before it exists
    (https://cloud.google.com/run/docs/triggering/https-request, "Deterministic URL")."""
    return f"https://{service_name}-{project_number}.{region}.run.app"


class TaskPipeline(pulumi.ComponentResource):
    """Queue -> OIDC-authenticated push -> private Cloud Run worker."""

    identities: Identities
    dead_letters: DeadLetterBucket
    dropped_tasks: gcp.logging.Metric
    worker: WorkerService
    tasks: TaskQueue
    audience: pulumi.Output[str]
    outputs: dict[str, pulumi.Output[str]]
    """The stack outputs, keyed by the names in contract.names."""

    def __init__(
        self,
        name: str,
        config: PipelineConfig,
        *,
        stack: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`stack`: the stack name, which tags the built image.

        Slightly over 80 lines on purpose: the whole wiring (which component waits
        for which API, who gets which account) reads top to bottom in one place.
        """
        super().__init__("tasks:index:TaskPipeline", name, None, opts)
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
            opts=child,
        )

        self.worker = WorkerService(
            f"{name}-worker",
            config.worker,
            gcp_config=where,
            image_tag=stack,
            runtime_email=self.identities.runtime.email,
            invoker_email=self.identities.invoker.email,
            invoker_member=self.identities.invoker.member,
            audience=self.audience,
            program_envs={
                WORKER_ENV_DEAD_LETTER_BUCKET: self.dead_letters.name,
                WORKER_ENV_RETRY_POLICIES: retry_policies_env(queue_retry_policies(config)),
            },
            opts=child,
        )

        self.tasks = TaskQueue(
            f"{name}-queue",
            config.queue,
            gcp_config=where,
            service_url=self.worker.url,
            audience=self.audience,
            invoker_email=self.identities.invoker.email,
            enqueuers=self.identities.enqueuer_grantees,
            # One switch protects the stack's stateful parts: the service (Cloud Run's
            # own flag) and the queue, whose tasks a delete would take with it.
            protect=config.worker.deletion_protection,
            opts=child,
        )

        # A task whose last attempt never reaches the worker leaves only Cloud Tasks' own
        # attempt log: count those, per queue (give it every queue of the stack).
        self.dropped_tasks = dropped_tasks_metric(
            name,
            gcp_config=where,
            service_name=config.worker.service_name,
            queue_ids=[self.tasks.queue.name],
            opts=child,
        )

        self.outputs = {
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
        }
        self.register_outputs(dict(self.outputs))

    def _audience(self, config: PipelineConfig) -> pulumi.Output[str]:
        """The custom audience when configured, otherwise the deterministic URL."""
        custom = config.worker.custom_audience
        if custom is not None:
            return pulumi.Output.from_input(custom)
        where = config.gcp
        project = gcp.organizations.get_project_output(
            project_id=where.project, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        service_name = config.worker.service_name
        return project.number.apply(
            lambda number: deterministic_service_url(service_name, number, where.region)
        )
