"""Typed, validated stack configuration: one pydantic model per concern.

`PipelineConfig` is made of sections, and each component takes its own section:

- `GcpConfig` (`gcp:project`, `gcp:region`, the provider's own keys): every component;
- `QueueConfig`: `TaskQueue` (and `dispatch_deadline`, the task field the stack exports);
- `WorkerConfig`: `WorkerService`;
- `IdentitiesConfig`: `Identities`;
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

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
        self.fix = fix or (
            f"set a valid value with `pulumi config set {key} VALUE` or in Pulumi.<stack>.yaml"
        )
        super().__init__(f"invalid stack config {key} = {shown}: {self.problem}. Fix: {self.fix}.")


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

    @field_validator("enqueuers")
    @classmethod
    def _enqueuers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for member in value:
            if member in PUBLIC_PRINCIPALS:
                raise ValueError(f"{member} would let anyone create tasks; name real principals")
            if not PRINCIPAL_RE.match(member):
                raise ValueError(
                    f"{member!r} is not an IAM principal; write it like "
                    '"serviceAccount:ci@P.iam.gserviceaccount.com" or "group:team@example.com"'
                )
        if len(set(value)) != len(value):
            raise ValueError("a principal is listed twice")
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
    dead_letters: DeadLetterConfig = Field(default_factory=DeadLetterConfig)

    @model_validator(mode="after")
    def _across_sections(self) -> PipelineConfig:
        if self.worker.request_timeout < self.queue.dispatch_deadline:
            raise FieldProblem(
                "request_timeout",
                f"{self.worker.request_timeout}s",
                f"it must be at least dispatch_deadline ({self.queue.dispatch_deadline}s), or "
                "Cloud Run cuts attempts that Cloud Tasks still waits for; raise request_timeout "
                "or lower dispatch_deadline",
            )
        return self
