"""Typed, validated stack configuration, parsed once from `pulumi.Config`.

Every key lives under the Pulumi project namespace (`cloud-tasks-pipeline:<key>`)
except the provider's own `gcp:project` and `gcp:region`. `load_config()` reads
them all, and either returns a `PipelineConfig` or raises `ConfigError` whose
message names the key, the bad value, the accepted range and the command that
fixes it. The program calls it before declaring any resource, so a bad value
never reaches Google Cloud half-way through an update.

Example `Pulumi.dev.yaml`::

    config:
      gcp:project: my-project-dev
      gcp:region: europe-west1
      cloud-tasks-pipeline:max_dispatches_per_second: 5
      cloud-tasks-pipeline:deletion_protection: false

This module deliberately does not read files, environment variables or the
stack name: what a stack means is in its `Pulumi.<stack>.yaml` and nowhere else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

import pulumi
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
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

PROJECT_NAME = "cloud-tasks-pipeline"
"""The Pulumi project name (Pulumi.yaml `name`); also the config namespace."""

INGRESS_VALUES = (
    "INGRESS_TRAFFIC_ALL",
    "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
)
Ingress = Literal[
    "INGRESS_TRAFFIC_ALL",
    "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
]

# Cloud Run accepts fractional CPU between 0.08 and 1, and whole CPUs from this set.
_WHOLE_CPUS = (1, 2, 4, 6, 8)
_MIN_CPU = Decimal("0.08")
# Cloud Run memory limits, and the CPUs a memory size needs (Cloud Run docs, "memory limits").
_MIN_MEMORY_MIB = 128
_MAX_MEMORY_MIB = 32 * 1024
_MEMORY_NEEDS_CPU = ((24 * 1024, 8), (16 * 1024, 6), (8 * 1024, 4), (4 * 1024, 2))
_MAX_REQUEST_CONCURRENCY = 1000
_MAX_INSTANCES = 1000

_DURATION_RE = re.compile(r"^\s*(\d+)\s*(s|m|h)?\s*$")
_CPU_RE = re.compile(r"^(\d+(?:\.\d+)?)$|^(\d+)m$")
_MEMORY_RE = re.compile(r"^(\d+)(Mi|Gi|M|G)$")
# Cloud Run service names: lowercase letters, digits and hyphens, starting with a
# letter, not ending with a hyphen. 49 characters keeps "NAME-PROJECTNUMBER" within
# the 63-character DNS label of the deterministic run.app URL.
_SERVICE_NAME_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,47}[a-z0-9])?$")
_QUEUE_NAME_RE = re.compile(rf"^[A-Za-z0-9-]{{1,{QUEUE_ID_MAX_CHARS}}}$")
# Service account ids are 6..30 characters; the prefix leaves room for "-enqueuer".
_ACCOUNT_PREFIX_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,19}[a-z0-9])?$")
_REPOSITORY_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
_PROJECT_ID_RE = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")  # europe-west1 .. europe-west12
_PRINCIPAL_RE = re.compile(r"^(serviceAccount|user|group|domain|principal|principalSet):\S+$")
_PUBLIC_PRINCIPALS = ("allUsers", "allAuthenticatedUsers")


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


def parse_duration(value: object) -> int:
    """Parse "30s", "5m", "1h" or a bare number of seconds into whole seconds.

    Cloud Tasks truncates durations to whole seconds, so fractions are refused
    instead of silently changed.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m or 1h")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION_RE.match(str(value))
        if match is None:
            raise ValueError(
                "expected a whole number of seconds, minutes or hours like 30s, 5m or 1h "
                "(Cloud Tasks truncates durations to whole seconds)"
            )
        seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_cpu(value: str) -> Decimal:
    """CPU limit in Cloud Run's forms: "1", "2", "0.5", "500m"."""
    match = _CPU_RE.match(value.strip())
    if match is None:
        raise ValueError('expected a CPU count like "1", "2", "0.5" or millicores like "500m"')
    try:
        cpu = Decimal(match.group(1)) if match.group(1) else Decimal(match.group(2)) / 1000
    except InvalidOperation as exc:  # the regex makes this unreachable; kept for clarity
        raise ValueError(f"cannot parse CPU {value!r}") from exc
    if cpu < _MIN_CPU or (cpu > 1 and cpu not in _WHOLE_CPUS):
        raise ValueError(
            "Cloud Run accepts a fractional CPU between 0.08 and 1, or one of 1, 2, 4, 6, 8"
        )
    return cpu


def parse_memory_mib(value: str) -> int:
    """Memory limit in Cloud Run's forms ("512Mi", "1Gi", "1G") as MiB."""
    match = _MEMORY_RE.match(value.strip())
    if match is None:
        raise ValueError('expected a memory size like "512Mi" or "2Gi"')
    amount, unit = int(match.group(1)), match.group(2)
    # Cloud Run reads M and G as powers of ten, Mi and Gi as powers of two.
    bytes_per_unit = {"Mi": 1024**2, "Gi": 1024**3, "M": 1000**2, "G": 1000**3}[unit]
    mib = amount * bytes_per_unit // 1024**2
    if not _MIN_MEMORY_MIB <= mib <= _MAX_MEMORY_MIB:
        raise ValueError("Cloud Run accepts memory from 128Mi to 32Gi")
    return mib


def _seconds(value: object) -> int:
    return parse_duration(value)


Seconds = Annotated[int, BeforeValidator(_seconds)]


class PipelineConfig(BaseModel):
    """The whole stack configuration. Field names are the config keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    # --- where ---------------------------------------------------------------------
    project: str = Field(description="Google Cloud project id (`gcp:project`).")
    region: str = Field(description="Region of the queue and the service (`gcp:region`).")

    # --- queue -----------------------------------------------------------------------
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
    max_attempts: int = Field(default=10, ge=-1, description="Attempts per task, -1 = unlimited.")
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

    # --- worker service -------------------------------------------------------------
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
        le=_MAX_REQUEST_CONCURRENCY,
        description="Requests one instance serves at once, 1..1000.",
    )
    min_instances: int = Field(default=0, ge=0, le=_MAX_INSTANCES, description="Warm instances.")
    max_instances: int = Field(default=10, ge=1, le=_MAX_INSTANCES, description="Instance ceiling.")
    cpu: str = Field(default="1", description="CPU limit per instance.")
    memory: str = Field(default="512Mi", description="Memory limit per instance.")
    deletion_protection: bool = Field(
        default=True,
        description="Refuse to delete the service; false only where you mean to destroy.",
    )
    custom_audience: str | None = Field(
        default=None,
        description="OIDC audience instead of the service URL; also set on the service.",
    )

    # --- identities -----------------------------------------------------------------
    account_prefix: str = Field(
        default="tasks", description="Prefix of the service account ids (PREFIX-invoker, ...)."
    )
    enqueuers: tuple[str, ...] = Field(
        default=(),
        description="IAM principals that create tasks; empty = an enqueuer account of the stack.",
    )

    # --- single-field checks ----------------------------------------------------------
    @field_validator("project")
    @classmethod
    def _project_id(cls, value: str) -> str:
        if not _PROJECT_ID_RE.match(value):
            raise ValueError(
                "a project id is 6..30 lowercase letters, digits and hyphens, from a letter"
            )
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not _REGION_RE.match(value):
            raise ValueError('expected a Google Cloud region like "europe-west1"')
        return value

    @field_validator("queue_name")
    @classmethod
    def _queue_name(cls, value: str | None) -> str | None:
        if value is not None and not _QUEUE_NAME_RE.match(value):
            raise ValueError(f"a queue id is 1..{QUEUE_ID_MAX_CHARS} letters, digits and hyphens")
        return value

    @field_validator("service_name")
    @classmethod
    def _service_name(cls, value: str) -> str:
        if not _SERVICE_NAME_RE.match(value):
            raise ValueError(
                "a service name is 1..49 lowercase letters, digits and hyphens, "
                "starting with a letter and not ending with a hyphen"
            )
        return value

    @field_validator("repository_id")
    @classmethod
    def _repository_id(cls, value: str) -> str:
        if not _REPOSITORY_RE.match(value):
            raise ValueError("a repository id is lowercase letters, digits and hyphens")
        return value

    @field_validator("account_prefix")
    @classmethod
    def _account_prefix(cls, value: str) -> str:
        if not _ACCOUNT_PREFIX_RE.match(value):
            raise ValueError(
                "the prefix is 1..21 lowercase letters, digits and hyphens starting with a letter, "
                "so that PREFIX-enqueuer stays a valid 6..30 character account id"
            )
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

    @field_validator("custom_audience")
    @classmethod
    def _custom_audience(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https://[^/?#\s]+/?$", value):
            raise ValueError(
                "a custom audience is an https:// URL without path or query "
                "(Cloud Run rejects audiences with a path with 401)"
            )
        return value

    @field_validator("enqueuers")
    @classmethod
    def _enqueuers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for member in value:
            if member in _PUBLIC_PRINCIPALS:
                raise ValueError(f"{member} would let anyone create tasks; name real principals")
            if not _PRINCIPAL_RE.match(member):
                raise ValueError(
                    f"{member!r} is not an IAM principal; write it like "
                    '"serviceAccount:ci@P.iam.gserviceaccount.com" or "group:team@example.com"'
                )
        if len(set(value)) != len(value):
            raise ValueError("a principal is listed twice")
        return value

    # --- cross-field checks -------------------------------------------------------------
    @model_validator(mode="after")
    def _cross_checks(self) -> PipelineConfig:
        if not MIN_DISPATCH_DEADLINE_S <= self.dispatch_deadline <= MAX_DISPATCH_DEADLINE_S:
            raise _FieldProblem(
                "dispatch_deadline",
                f"{self.dispatch_deadline}s",
                f"Cloud Tasks accepts a dispatch deadline from {MIN_DISPATCH_DEADLINE_S}s "
                f"to {MAX_DISPATCH_DEADLINE_S}s (30m)",
            )
        if self.min_backoff > self.max_backoff:
            raise _FieldProblem(
                "min_backoff",
                f"{self.min_backoff}s",
                f"min_backoff must not exceed max_backoff ({self.max_backoff}s); "
                "lower min_backoff or raise max_backoff",
            )
        if self.request_timeout > CLOUD_RUN_MAX_REQUEST_TIMEOUT_S:
            raise _FieldProblem(
                "request_timeout",
                f"{self.request_timeout}s",
                f"Cloud Run allows at most {CLOUD_RUN_MAX_REQUEST_TIMEOUT_S}s",
            )
        if self.request_timeout < self.dispatch_deadline:
            raise _FieldProblem(
                "request_timeout",
                f"{self.request_timeout}s",
                f"it must be at least dispatch_deadline ({self.dispatch_deadline}s), or Cloud Run "
                "cuts attempts that Cloud Tasks still waits for; raise request_timeout or lower "
                "dispatch_deadline",
            )
        if self.min_instances > self.max_instances:
            raise _FieldProblem(
                "min_instances",
                self.min_instances,
                f"min_instances must not exceed max_instances ({self.max_instances})",
            )
        cpu = parse_cpu(self.cpu)
        if cpu < 1 and self.request_concurrency != 1:
            raise _FieldProblem(
                "request_concurrency",
                self.request_concurrency,
                f"Cloud Run requires concurrency 1 with less than one CPU (cpu = {self.cpu}); "
                'set request_concurrency to 1 or cpu to "1" or more',
            )
        memory = parse_memory_mib(self.memory)
        for threshold, needed in _MEMORY_NEEDS_CPU:
            if memory > threshold and cpu < needed:
                raise _FieldProblem(
                    "cpu",
                    self.cpu,
                    f"Cloud Run needs at least {needed} CPUs for more than {threshold // 1024}Gi "
                    f"of memory (memory = {self.memory})",
                )
        return self

    # --- derived values -------------------------------------------------------------------
    def duration(self, field: str) -> str:
        """A duration field in the provider's "Ns" form."""
        return f"{getattr(self, field)}s"

    @property
    def invoker_account_id(self) -> str:
        return f"{self.account_prefix}-invoker"

    @property
    def runtime_account_id(self) -> str:
        return f"{self.account_prefix}-runtime"

    @property
    def enqueuer_account_id(self) -> str:
        return f"{self.account_prefix}-enqueuer"


class _FieldProblem(ValueError):
    """Raised by cross-field checks to name the key that should change."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.value = value
        self.problem = problem


# Config keys that are not this project's (the provider reads them too).
_PROVIDER_KEYS = {"project": "gcp:project", "region": "gcp:region"}
_LIST_FIELDS = frozenset({"enqueuers"})


def config_key(field: str) -> str:
    """The full config key of a field, e.g. `cloud-tasks-pipeline:max_attempts`."""
    return _PROVIDER_KEYS.get(field, f"{PROJECT_NAME}:{field}")


def project_keys() -> tuple[str, ...]:
    """Every `cloud-tasks-pipeline:*` key this program understands."""
    return tuple(
        config_key(name) for name in PipelineConfig.model_fields if name not in _PROVIDER_KEYS
    )


def parse_config(raw: Mapping[str, Any]) -> PipelineConfig:
    """Validate raw values keyed by field name; raise `ConfigError` on the first problem."""
    try:
        return PipelineConfig.model_validate(dict(raw))
    except ValidationError as exc:
        error = exc.errors()[0]
        context = error.get("ctx") or {}
        inner = context.get("error")
        if isinstance(inner, _FieldProblem):
            raise ConfigError(config_key(inner.field), inner.value, inner.problem) from None
        field = str(error["loc"][0]) if error["loc"] else "?"
        value = raw.get(field)
        problem = str(inner) if isinstance(inner, ValueError) else error["msg"]
        described = PipelineConfig.model_fields.get(field)
        if not isinstance(inner, ValueError) and described and described.description:
            problem = f"{problem} ({described.description.rstrip('.')})"
        if error["type"] == "extra_forbidden":
            problem = "this key is not known; the README's configuration reference lists the keys"
        elif error["type"] == "missing":
            problem = "it is required"
        elif error["type"] == "literal_error" and field == "ingress":
            problem = f"ingress must be one of {', '.join(INGRESS_VALUES)}"
        raise ConfigError(config_key(field), value, problem) from None


def _configured_project_keys() -> set[str]:
    """Keys set in this project's namespace, wherever the runtime got them from.

    The CLI hands config to the program through PULUMI_CONFIG; tests and the
    offline plan use `set_all_config`. Pulumi has no public API to list keys, and
    a typo in a key would otherwise be silently ignored, so both are read here.
    """
    from pulumi.runtime import config as runtime_config

    keys = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    return {key for key in keys if key.startswith(f"{PROJECT_NAME}:")}


def load_config() -> PipelineConfig:
    """Read and validate the stack config; raise `ConfigError` before any resource exists."""
    project_cfg = pulumi.Config(PROJECT_NAME)
    gcp_cfg = pulumi.Config("gcp")
    unknown = sorted(_configured_project_keys() - set(project_keys()))
    if unknown:
        raise ConfigError(
            unknown[0],
            project_cfg.get(unknown[0].split(":", 1)[1]),
            "this key is not known (a typo?); Pulumi.yaml and the README's configuration "
            "reference list the keys",
            fix=f"rename it to a known key or remove it with `pulumi config rm {unknown[0]}`",
        )
    raw: dict[str, Any] = {"project": gcp_cfg.get("project"), "region": gcp_cfg.get("region")}
    for field in PipelineConfig.model_fields:
        if field in _PROVIDER_KEYS:
            continue
        text = project_cfg.get(field)
        # "" (and []) are Pulumi.yaml's defaults for the optional keys: not set.
        if text is None or text == "":
            continue
        if field in _LIST_FIELDS:
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ConfigError(
                    config_key(field), text, 'expected a YAML list like ["group:team@example.com"]'
                ) from None
            if not isinstance(value, list):
                raise ConfigError(config_key(field), text, "expected a list of IAM principals")
            raw[field] = tuple(str(v) for v in value)
        else:
            raw[field] = text
    return parse_config({k: v for k, v in raw.items() if v is not None})
