"""Typed, validated stack configuration: one pydantic model per concern.

`PipelineConfig` is made of sections, and each component takes its own section:

- `GcpConfig` (`gcp:project`, `gcp:region`, the provider's own keys): every component;
- `QueueConfig`: `TaskQueue` (and `dispatch_deadline`, the task field the stack exports);
- `WorkerConfig`: `WorkerService`;
- `IdentitiesConfig`: `Identities`;
- `RoutingConfig` (`queues`, `routes`): `TaskPipeline`, which builds one `TaskQueue` per
  queue key from it.

Several queues: the flat queue keys describe the queue `default`; `queues` maps
more queue keys to their own settings (the same keys as `QueueConfig`, nested:
`queues.email.max_dispatches_per_second`), `routes` maps a task type to a queue key.
`PipelineConfig.queues` is every queue by key, `default` first.
- `OperationsConfig`: `Operations` (alerts, dashboard) and the plan's cost preview.
- `DeadLetterConfig`: `DeadLetterBucket` (retention and readers of the dead letters).

A field name is its config key: `cloud-tasks-pipeline:<field>`, or `gcp:<field>`
for `GcpConfig`. Keys stay flat in `Pulumi.<stack>.yaml`; which section a key
belongs to is read from these models, so adding a key is one field here (plus
its entry in `Pulumi.yaml` and the README's configuration reference, which
tests/components keep equal to the models).

Values are checked here, one key at a time and across keys; a failed check
names the key that should change (`FieldProblem`). `components.loading` reads
the flat keys through `pulumi.Config` into these models and turns the first
failure into a `ConfigError`, before the program declares any resource.

Example `Pulumi.dev.yaml`::

    config:
      gcp:project: my-project-dev
      gcp:region: europe-west1
      cloud-tasks-pipeline:max_dispatches_per_second: 5
      cloud-tasks-pipeline:deletion_protection: false

This module deliberately does not read `pulumi.Config`, files, environment
variables or the stack name (what a stack means is in its `Pulumi.<stack>.yaml`
and nowhere else; `components.loading` reads it), and does not parse single
values (`components.values` does).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from components.task_types import declared_task_types
from components.values import (
    ACCOUNT_PREFIX_RE,
    CUSTOM_AUDIENCE_RE,
    MAX_INSTANCES,
    MAX_REQUEST_CONCURRENCY,
    MEMORY_NEEDS_CPU,
    PRINCIPAL_RE,
    PROJECT_ID_RE,
    QUEUE_NAME_RE,
    REGION_RE,
    REPOSITORY_RE,
    SERVICE_NAME_RE,
    Ingress,
    Seconds,
    parse_cpu,
    parse_memory_mib,
)
from components.worker_env import (
    DOCKERFILE,
    REPO_ROOT,
    SecretRef,
    check_module,
    duplicate_names,
    missing_from_image,
    module_exists,
    parse_env_entry,
    parse_secret_entry,
)
from contract.limits import (
    CLOUD_RUN_DEFAULT_REQUEST_TIMEOUT_S,
    CLOUD_RUN_MAX_REQUEST_TIMEOUT_S,
    DEFAULT_DISPATCH_DEADLINE_S,
    MAX_CONCURRENT_DISPATCHES,
    MAX_DISPATCH_DEADLINE_S,
    MAX_DISPATCHES_PER_SECOND,
    MAX_TASK_BYTES,
    MIN_DISPATCH_DEADLINE_S,
    QUEUE_ID_MAX_CHARS,
)
from contract.resources import (
    ENQUEUER_ACCOUNT_SUFFIX,
    INVOKER_ACCOUNT_SUFFIX,
    PROJECT_NAME,
    PUBLIC_PRINCIPALS,
    RUNTIME_ACCOUNT_SUFFIX,
    account_id,
)
from contract.routing import DEFAULT_QUEUE_KEY, queue_key_problem
from contract.task_types import task_type_problem

GCP_NAMESPACE = "gcp"
"""The provider's config namespace (`gcp:project`, `gcp:region`)."""


class ConfigError(ValueError):
    """A stack config value is out of range. The message says which key, what was
    given, what is accepted and the command that fixes it."""

    def __init__(self, key: str, value: object, problem: str, fix: str | None = None) -> None:
        self.key = key
        self.value = value
        self.problem = problem.rstrip(". ")
        shown = "(not set)" if value is None else repr(value)
        # A key inside a map (`queues.email.max_attempts`) is set with --path.
        nested = "." in key.partition(":")[2]
        self.fix = fix or (
            f"set a valid value with `pulumi config set --path '{key}' VALUE` or in "
            "Pulumi.<stack>.yaml"
            if nested
            else f"set a valid value with `pulumi config set {key} VALUE` or in Pulumi.<stack>.yaml"
        )
        super().__init__(f"invalid stack config {key} = {shown}: {self.problem}. Fix: {self.fix}.")
        self.others: tuple[ConfigError, ...] = ()

    @classmethod
    def combined(cls, errors: Sequence[ConfigError]) -> ConfigError:
        """The first error, its message followed by every other one (each once), so one
        mistake never hides the next: a stack file is fixed in one pass, not one per run."""
        first = errors[0]
        others: list[ConfigError] = []
        for error in errors[1:]:
            if str(error) != str(first) and all(str(error) != str(o) for o in others):
                others.append(error)
        if not others:
            return first
        merged = cls(first.key, first.value, first.problem, first.fix)
        merged.others = tuple(others)
        merged.args = ("\n  and: ".join([str(first), *(str(o) for o in others)]),)
        return merged


class FieldProblem(ValueError):
    """Raised by cross-field checks to name the key that should change (by short key)."""

    def __init__(self, field: str, value: object, problem: str, fix: str | None = None) -> None:
        super().__init__(problem)
        self.field = field
        self.value = value
        self.problem = problem
        self.fix = fix  # when the usual "set a valid value" is not the fix


class Section(BaseModel):
    """One concern's keys. Field names are config keys in `namespace`."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
    namespace: ClassVar[str] = PROJECT_NAME


class GcpConfig(Section):
    """Where the stack deploys: the provider's own keys, which every component needs."""

    namespace: ClassVar[str] = GCP_NAMESPACE

    project: str = Field(description="Google Cloud project id (`gcp:project`).")
    region: str = Field(description="Region of the queue and the service (`gcp:region`).")

    @field_validator("project")
    @classmethod
    def _project_id(cls, value: str) -> str:
        if not PROJECT_ID_RE.match(value):
            raise ValueError(
                "a project id is 6..30 lowercase letters, digits and hyphens, from a letter"
            )
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not REGION_RE.match(value):
            raise ValueError('expected a Google Cloud region like "europe-west1"')
        return value


class QueueConfig(Section):
    """The Cloud Tasks queue (`google.cloud.tasks.v2.Queue`) and the tasks' dispatch deadline."""

    queue_name: str | None = Field(
        default=None,
        description="Queue id; unset = auto-named with a random suffix (no 7-day reuse block).",
    )
    max_dispatches_per_second: float = Field(
        default=10.0,
        gt=0,
        le=MAX_DISPATCHES_PER_SECOND,
        description="Queue dispatch rate, in (0, 500].",
    )
    max_concurrent_dispatches: int = Field(
        default=100,
        ge=1,
        le=MAX_CONCURRENT_DISPATCHES,
        description="Tasks in flight at once, 1..5000.",
    )
    # Cloud Tasks takes -1 for "unlimited" (RetryConfig.max_attempts, queue.proto), but a
    # poison task would then retry forever: the policy pack's mandatory
    # queue-bounded-retries rule refuses it, so config refuses it first.
    max_attempts: int = Field(
        default=10,
        ge=1,
        description="Attempts per task, >= 1 (unlimited, -1, is refused: a failing task "
        "would be retried forever).",
    )
    min_backoff: Seconds = Field(default=1, description="First retry delay.")
    max_backoff: Seconds = Field(default=300, description="Longest retry delay.")
    max_doublings: int = Field(default=5, ge=0, description="Times the backoff doubles.")
    max_retry_duration: Seconds = Field(
        default=0, description="Give up retrying after this long; 0 = no time limit."
    )
    log_sampling_ratio: float = Field(
        default=1.0, ge=0, le=1, description="Fraction of task operations logged, 0..1."
    )
    queue_paused: bool = Field(default=False, description="Create the queue PAUSED.")
    queue_http_target: bool = Field(
        default=False,
        description="Queue-level target: pin tasks to the service, attach the invoker's token.",
    )
    dispatch_deadline: Seconds = Field(
        default=DEFAULT_DISPATCH_DEADLINE_S,
        description="Longest a task's HTTP attempt may run, 15s..30m.",
    )

    @field_validator("queue_name")
    @classmethod
    def _queue_name(cls, value: str | None) -> str | None:
        if value is not None and not QUEUE_NAME_RE.match(value):
            raise ValueError(f"a queue id is 1..{QUEUE_ID_MAX_CHARS} letters, digits and hyphens")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> QueueConfig:
        # `HttpRequest.dispatch_deadline`, google/cloud/tasks/v2/task.proto: 15 s .. 30 min.
        if not MIN_DISPATCH_DEADLINE_S <= self.dispatch_deadline <= MAX_DISPATCH_DEADLINE_S:
            raise FieldProblem(
                "dispatch_deadline",
                f"{self.dispatch_deadline}s",
                f"Cloud Tasks accepts a dispatch deadline from {MIN_DISPATCH_DEADLINE_S}s "
                f"to {MAX_DISPATCH_DEADLINE_S}s (30m)",
            )
        if self.min_backoff > self.max_backoff:
            raise FieldProblem(
                "min_backoff",
                f"{self.min_backoff}s",
                f"min_backoff must not exceed max_backoff ({self.max_backoff}s); "
                "lower min_backoff or raise max_backoff",
            )
        return self


class WorkerConfig(Section):
    """The Cloud Run worker service (`google.cloud.run.v2.Service`) and its image."""

    service_name: str = Field(default="tasks-worker", description="Cloud Run service name.")
    image: str | None = Field(
        default=None,
        description="Prebuilt worker image; unset = build service/ into a repository of the stack.",
    )
    repository_id: str = Field(default="tasks", description="Artifact Registry repository id.")
    ingress: Ingress = Field(default="INGRESS_TRAFFIC_ALL", description="Cloud Run ingress.")
    request_timeout: Seconds = Field(
        default=CLOUD_RUN_DEFAULT_REQUEST_TIMEOUT_S * 2,
        description="Cloud Run request timeout, >= dispatch_deadline and <= 3600s.",
    )
    request_concurrency: int = Field(
        default=80,
        ge=1,
        le=MAX_REQUEST_CONCURRENCY,
        description="Requests one instance serves at once, 1..1000.",
    )
    min_instances: int = Field(default=0, ge=0, le=MAX_INSTANCES, description="Warm instances.")
    max_instances: int = Field(default=10, ge=1, le=MAX_INSTANCES, description="Instance ceiling.")
    cpu: str = Field(default="1", description="CPU limit per instance.")
    memory: str = Field(default="512Mi", description="Memory limit per instance.")
    deletion_protection: bool = Field(
        default=True,
        description="Refuse to delete the service and the queue; false only to destroy.",
    )
    custom_audience: str | None = Field(
        default=None,
        description="OIDC audience instead of the service URL; also set on the service.",
    )
    task_modules: tuple[str, ...] = Field(
        default=(),
        description="Your task modules (import paths), loaded by the worker; in the image.",
    )
    worker_env: tuple[str, ...] = Field(
        default=(),
        description="NAME=value settings of the worker (never credentials).",
    )
    worker_secrets: tuple[str, ...] = Field(
        default=(),
        description="NAME=SECRET[:VERSION]: a variable from Secret Manager.",
    )

    @property
    def env_vars(self) -> dict[str, str]:
        """`worker_env` as a mapping, in config order."""
        return dict(parse_env_entry(entry) for entry in self.worker_env)

    @property
    def secret_refs(self) -> list[SecretRef]:
        """`worker_secrets`, parsed."""
        return [parse_secret_entry(entry) for entry in self.worker_secrets]

    @property
    def builds_image(self) -> bool:
        """No prebuilt `image`: the stack builds one into its own repository."""
        return self.image is None

    @field_validator("service_name")
    @classmethod
    def _service_name(cls, value: str) -> str:
        if not SERVICE_NAME_RE.match(value):
            raise ValueError(
                "a service name is 1..49 lowercase letters, digits and hyphens, "
                "starting with a letter and not ending with a hyphen"
            )
        return value

    @field_validator("repository_id")
    @classmethod
    def _repository_id(cls, value: str) -> str:
        if not REPOSITORY_RE.match(value):
            raise ValueError("a repository id is lowercase letters, digits and hyphens")
        return value

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value: str) -> str:
        parse_cpu(value)
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        parse_memory_mib(value)
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c.isspace() for c in value)):
            raise ValueError(
                "an image reference has no spaces, like REGION-docker.pkg.dev/P/R/worker:TAG"
            )
        return value

    @field_validator("task_modules")
    @classmethod
    def _task_modules(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_module(name) for name in value)

    @field_validator("worker_env")
    @classmethod
    def _worker_env(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            parse_env_entry(entry)
        return value

    @field_validator("worker_secrets")
    @classmethod
    def _worker_secrets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            parse_secret_entry(entry)
        return value

    @field_validator("custom_audience")
    @classmethod
    def _custom_audience(cls, value: str | None) -> str | None:
        if value is not None and not CUSTOM_AUDIENCE_RE.match(value):
            raise ValueError(
                "a custom audience is an https:// URL without path or query "
                "(Cloud Run rejects audiences with a path with 401)"
            )
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> WorkerConfig:
        # https://cloud.google.com/run/docs/configuring/request-timeout
        if self.request_timeout > CLOUD_RUN_MAX_REQUEST_TIMEOUT_S:
            raise FieldProblem(
                "request_timeout",
                f"{self.request_timeout}s",
                f"Cloud Run allows at most {CLOUD_RUN_MAX_REQUEST_TIMEOUT_S}s",
            )
        if self.min_instances > self.max_instances:
            raise FieldProblem(
                "min_instances",
                self.min_instances,
                f"min_instances must not exceed max_instances ({self.max_instances})",
            )
        # https://cloud.google.com/run/docs/configuring/services/cpu: less than one CPU
        # needs concurrency 1; memory-limits: large memory needs more CPUs.
        cpu = parse_cpu(self.cpu)
        if cpu < 1 and self.request_concurrency != 1:
            raise FieldProblem(
                "request_concurrency",
                self.request_concurrency,
                f"Cloud Run requires concurrency 1 with less than one CPU (cpu = {self.cpu}); "
                'set request_concurrency to 1 or cpu to "1" or more',
            )
        self._check_environment()
        memory = parse_memory_mib(self.memory)
        for threshold, needed in MEMORY_NEEDS_CPU:
            if memory > threshold and cpu < needed:
                raise FieldProblem(
                    "cpu",
                    self.cpu,
                    f"Cloud Run needs at least {needed} CPUs for more than {threshold // 1024}Gi "
                    f"of memory (memory = {self.memory})",
                )
        return self

    def _check_environment(self) -> None:
        if twice := duplicate_names(self.worker_env, self.worker_secrets):
            raise FieldProblem(
                "worker_env", self.worker_env, f"{', '.join(twice)} is set more than once"
            )
        # With a prebuilt `image` the modules are that image's business.
        absent = [m for m in self.task_modules if not module_exists(m, REPO_ROOT)]
        if self.builds_image and absent:
            raise FieldProblem(
                "task_modules",
                self.task_modules,
                f"{', '.join(absent)}: no such package or module next to Pulumi.yaml",
                fix="check the import path (a package directory or a .py file at the "
                "repository root, like myteam/tasks.py for myteam.tasks)",
            )
        if self.builds_image and (
            missing := missing_from_image(self.task_modules, REPO_ROOT, DOCKERFILE)
        ):
            packages = sorted({m.split(".")[0] for m in missing})
            raise FieldProblem(
                "task_modules",
                self.task_modules,
                f"{', '.join(missing)} would not be in the worker image",
                fix="add "
                + " and ".join(f"`COPY {p}/ ./{p}/`" for p in packages)
                + f" to {DOCKERFILE} and "
                + " and ".join(f"`!{p}/`" for p in packages)
                + f" to {DOCKERFILE}.dockerignore (service/README.md, Adding a task type)",
            )


class IdentitiesConfig(Section):
    """The service accounts' ids and the principals allowed to create tasks."""

    account_prefix: str = Field(
        default="tasks", description="Prefix of the service account ids (PREFIX-invoker, ...)."
    )
    enqueuers: tuple[str, ...] = Field(
        default=(),
        description="IAM principals that create tasks; empty = an enqueuer account of the stack.",
    )
    operators: tuple[str, ...] = Field(
        default=(),
        description="IAM principals who operate the queues (python -m ops): queue-scoped "
        "viewer, taskDeleter, queueAdmin and enqueuer roles on every queue, actAs on the "
        "invoker (replay), read on the dead letters.",
    )

    @property
    def invoker_account_id(self) -> str:
        return account_id(self.account_prefix, INVOKER_ACCOUNT_SUFFIX)

    @property
    def runtime_account_id(self) -> str:
        return account_id(self.account_prefix, RUNTIME_ACCOUNT_SUFFIX)

    @property
    def enqueuer_account_id(self) -> str:
        return account_id(self.account_prefix, ENQUEUER_ACCOUNT_SUFFIX)

    @field_validator("account_prefix")
    @classmethod
    def _account_prefix(cls, value: str) -> str:
        if not ACCOUNT_PREFIX_RE.match(value):
            raise ValueError(
                "the prefix is 1..21 lowercase letters, digits and hyphens starting with a letter, "
                "so that PREFIX-enqueuer stays a valid 6..30 character account id"
            )
        return value

    @field_validator("enqueuers", "operators")
    @classmethod
    def _enqueuers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for member in value:
            if member in PUBLIC_PRINCIPALS:
                raise ValueError(
                    f"{member} would let anyone create tasks (and operators read their "
                    "bodies); name real principals"
                )
            if not PRINCIPAL_RE.match(member):
                raise ValueError(
                    f"{member!r} is not an IAM principal; write it like "
                    '"serviceAccount:ci@P.iam.gserviceaccount.com" or "group:team@example.com"'
                )
        if len(set(value)) != len(value):
            raise ValueError("a principal is listed twice")
        return value


class RoutingConfig(Section):
    """Queues besides `default` (the flat queue keys) and which task types go to which.

    `components.loading` merges `queues.default` into the flat keys, so `queues` here
    holds the other queues only.
    """

    queues: dict[str, QueueConfig] = Field(
        default_factory=dict,
        description="More queues: queue key -> that queue's settings (the queue keys above); "
        "the flat keys are queue `default`.",
    )
    routes: dict[str, str] = Field(
        default_factory=dict,
        description="Task type -> queue key; a type without a route goes to `default`.",
    )

    @field_validator("queues")
    @classmethod
    def _queue_keys(cls, value: dict[str, QueueConfig]) -> dict[str, QueueConfig]:
        for key in value:
            if key == DEFAULT_QUEUE_KEY:
                raise FieldProblem(
                    f"queues.{key}",
                    key,
                    "queue `default` is described by the flat keys (and queues.default), "
                    "not held here",
                )
            if (problem := queue_key_problem(key)) is not None:
                raise FieldProblem(f"queues.{key}", key, problem)
        return value

    @field_validator("routes")
    @classmethod
    def _routes(cls, value: dict[str, str]) -> dict[str, str]:
        for task_type, key in value.items():
            if (problem := task_type_problem(task_type)) is not None:
                raise FieldProblem(f"routes.{task_type}", key, problem)
            if (problem := queue_key_problem(key)) is not None:
                raise FieldProblem(f"routes.{task_type}", key, problem)
        return value


EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CHANNEL_ID_RE = re.compile(r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/notificationChannels/[0-9]+$")


class OperationsConfig(Section):
    """Alerting, the dashboard and the expected volume the cost preview assumes.

    A threshold of 0 (the durations) means "derived from the queue's or the worker's
    own settings" (`components.monitoring` derives them, one rule each).
    """

    alert_emails: tuple[str, ...] = Field(
        default=(),
        description="Email addresses the alerts go to (one email notification channel each).",
    )
    alert_channels: tuple[str, ...] = Field(
        default=(),
        description="Existing notification channels (projects/P/notificationChannels/N).",
    )
    alert_queue_depth: int = Field(
        default=1000, ge=1, description="Alert when a queue holds more tasks than this."
    )
    alert_oldest_task_age: Seconds = Field(
        default=0,
        description="Alert when attempts run this late; 0 = the queue's max_backoff, at least 5m.",
    )
    alert_failure_ratio: float = Field(
        default=0.1, gt=0, le=1, description="Alert above this share of failed attempts, (0, 1]."
    )
    alert_worker_5xx_ratio: float = Field(
        default=0.05, gt=0, le=1, description="Alert above this share of 5xx answers, (0, 1]."
    )
    alert_latency: Seconds = Field(
        default=0,
        description="Alert when the worker's p99 latency exceeds this; 0 = half the dispatch "
        "deadline.",
    )
    expected_tasks_per_day: int = Field(
        default=10_000, ge=0, description="Tasks a day the stack expects (cost preview)."
    )
    expected_handler_seconds: float = Field(
        default=0.5, gt=0, le=3600, description="Average seconds one task's handler runs."
    )
    expected_payload_bytes: int = Field(
        default=2048, ge=0, le=MAX_TASK_BYTES, description="Average task body size in bytes."
    )
    trace_export: bool = Field(
        default=False,
        description="Export the worker's own spans to Cloud Trace (OTLP); bootstrap/ then "
        "grants the runtime account roles/cloudtrace.agent.",
    )

    @field_validator("alert_emails")
    @classmethod
    def _alert_emails(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            if not EMAIL_RE.match(address):
                raise ValueError(f"{address!r} is not an email address (like oncall@example.com)")
        if len(set(value)) != len(value):
            raise ValueError("an address is listed twice")
        return value

    @field_validator("alert_channels")
    @classmethod
    def _alert_channels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for channel in value:
            if not CHANNEL_ID_RE.match(channel):
                raise ValueError(
                    f"{channel!r} is not a notification channel id; write it like "
                    '"projects/my-project/notificationChannels/1234567890" '
                    "(gcloud beta monitoring channels list)"
                )
        return value


class DeadLetterConfig(Section):
    """Where dead tasks are kept: the dead-letter bucket (`components.dead_letters`)."""

    dead_letter_retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="Days a dead letter is kept (and cannot be deleted) before it expires.",
    )
    dead_letter_readers: tuple[str, ...] = Field(
        default=(),
        description="IAM principals who may read dead letters (roles/storage.objectViewer).",
    )

    @field_validator("dead_letter_readers")
    @classmethod
    def _readers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for member in value:
            if member in PUBLIC_PRINCIPALS:
                raise ValueError(
                    f"{member} would let anyone read task bodies; name the operators' principals"
                )
            if not PRINCIPAL_RE.match(member):
                raise ValueError(
                    f"{member!r} is not an IAM principal; write it like "
                    '"group:oncall@example.com" or "user:alice@example.com"'
                )
        if len(set(value)) != len(value):
            raise ValueError("a principal is listed twice")
        return value


class PipelineConfig(BaseModel):
    """The whole stack configuration: one section per concern."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gcp: GcpConfig
    queue: QueueConfig = Field(default_factory=QueueConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    identities: IdentitiesConfig = Field(default_factory=IdentitiesConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)

    @property
    def queues(self) -> dict[str, QueueConfig]:
        """Every queue by key, `default` (the flat keys) first."""
        return {DEFAULT_QUEUE_KEY: self.queue, **self.routing.queues}

    @property
    def routes(self) -> dict[str, str]:
        """Task type -> queue key (`contract.routing.queue_for` reads it)."""
        return dict(self.routing.routes)

    @property
    def routed(self) -> bool:
        """The stack declares queues besides `default`, or routes. A stack that does not
        (every stack file of the single-queue version) is wired exactly as before."""
        return bool(self.routing.queues or self.routing.routes)

    operations: OperationsConfig = Field(default_factory=OperationsConfig)
    dead_letters: DeadLetterConfig = Field(default_factory=DeadLetterConfig)

    @model_validator(mode="after")
    def _across_sections(self) -> PipelineConfig:
        for key, queue in self.queues.items():
            if self.worker.request_timeout < queue.dispatch_deadline:
                deadline = queue_path(key, "dispatch_deadline")
                raise FieldProblem(
                    "request_timeout",
                    f"{self.worker.request_timeout}s",
                    f"it must be at least {deadline} ({queue.dispatch_deadline}s), or "
                    "Cloud Run cuts attempts that Cloud Tasks still waits for; raise "
                    f"request_timeout or lower {deadline}",
                )
        self._check_queue_names()
        self._check_routes()
        return self

    def _check_queue_names(self) -> None:
        owner: dict[str, str] = {}
        for key, queue in self.queues.items():
            if queue.queue_name is None:
                continue
            if queue.queue_name in owner:
                other = owner[queue.queue_name]
                raise FieldProblem(
                    queue_path(key, "queue_name"),
                    queue.queue_name,
                    f"queue {other!r} ({queue_path(other, 'queue_name')}) has the same queue "
                    "name; each queue needs its own id (or leave queue_name unset: auto-named)",
                )
            owner[queue.queue_name] = key

    def _check_routes(self) -> None:
        declared = ", ".join(self.queues)
        for task_type, key in self.routing.routes.items():
            if key not in self.queues:
                raise FieldProblem(
                    f"routes.{task_type}",
                    key,
                    f"queue {key!r} is not declared (declared: {declared}); declare it under "
                    f"queues.{key} or route {task_type} to a declared queue",
                )
        if not self.routing.routes:
            return
        # With a prebuilt image the modules are that image's business (as for task_modules).
        found = declared_task_types(self.worker.task_modules, REPO_ROOT)
        if not found.complete:
            return
        for task_type, key in self.routing.routes.items():
            if task_type not in found.names:
                raise FieldProblem(
                    f"routes.{task_type}",
                    key,
                    f"the worker registers no task type {task_type!r} (registered: "
                    f"{', '.join(sorted(found.names))}: the built-in types and task_modules)",
                    fix=f"fix the type's name, or add the module that declares {task_type!r} "
                    "to task_modules",
                )

    def capacity_warnings(self) -> list[str]:
        """Risks the config cannot rule out, each with its numbers (the program reports
        them as warnings; `pulumi preview` and `python -m plan` print them).

        Every queue may hold `max_concurrent_dispatches` attempts in flight, but no more
        than its rate lets start within one dispatch deadline. When those together exceed
        what the service takes at once (`max_instances x request_concurrency`), the excess
        is answered 429 and retried: each such answer burns one of the task's attempts.
        Whether it happens depends on how long the handlers take, which config cannot
        know, so it is a warning, not an error.
        """
        capacity = self.worker.max_instances * self.worker.request_concurrency
        reachable = {
            key: min(
                queue.max_concurrent_dispatches,
                math.ceil(queue.max_dispatches_per_second * queue.dispatch_deadline),
            )
            for key, queue in self.queues.items()
        }
        total = sum(reachable.values())
        if total <= capacity:
            return []
        parts = " + ".join(f"{key} {count}" for key, count in reachable.items())
        return [
            f"the queues may hold {total} attempts in flight ({parts}: each queue's "
            "max_concurrent_dispatches, or what its rate starts within one dispatch deadline "
            f"if fewer) but the service takes {capacity} at once (max_instances "
            f"{self.worker.max_instances} x request_concurrency {self.worker.request_concurrency})"
            ": with slow handlers the excess gets 429 and each retry burns an attempt; raise "
            "max_instances or request_concurrency, or lower max_concurrent_dispatches"
        ]


def queue_path(key: str, field: str) -> str:
    """The config path of a queue's setting: `dispatch_deadline` for `default` (its flat
    key), `queues.email.dispatch_deadline` for the others."""
    return field if key == DEFAULT_QUEUE_KEY else f"queues.{key}.{field}"
