"""The worker's settings, read once from the environment at startup.

Every variable is validated here so a misconfigured revision fails at start
with a message naming the variable and the fix, instead of answering 401 to
every task. Names shared with the Pulumi program and the local stack come from
`contract.names`; the rest are the worker's own (documented in README.md).
This module deliberately reads nothing but the environment (no files, no
metadata server). `Settings.from_env` is longer than the usual ~80 lines on
purpose: one straight pass over the variables, each check next to the message
it gives.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from contract.names import (
    GOOGLE_CERTS_URL,
    WORKER_ENV_ALLOWED_INVOKERS,
    WORKER_ENV_AUDIENCE,
    WORKER_ENV_CERTS_URL,
    WORKER_ENV_DEAD_LETTER_BUCKET,
    WORKER_ENV_EXTRA_MODULES,
    WORKER_ENV_PORT,
    WORKER_ENV_QUEUES,
    WORKER_ENV_RETRY_POLICIES,
    WORKER_ENV_ROUTES,
    WORKER_ENV_TRACE_EXPORT,
)
from service.final_attempt import FinalAttemptConfigError, FinalAttempts
from service.queues import QueueRouting, QueueRoutingError, parse_queue_routing

HOST_ENV: Final = "HOST"
PROJECT_ENV: Final = "GOOGLE_CLOUD_PROJECT"
EXTRA_MODULES_ENV: Final = WORKER_ENV_EXTRA_MODULES
SHUTDOWN_GRACE_ENV: Final = "TASKS_SHUTDOWN_GRACE_S"
IDEMPOTENCY_MAX_ENTRIES_ENV: Final = "TASKS_IDEMPOTENCY_MAX_ENTRIES"
IDEMPOTENCY_TTL_ENV: Final = "TASKS_IDEMPOTENCY_TTL_S"
CERTS_REFRESH_MIN_INTERVAL_ENV: Final = "TASKS_CERTS_MIN_REFRESH_S"
LOG_LEVEL_ENV: Final = "LOG_LEVEL"
DEAD_LETTER_SINK_ENV: Final = "TASKS_DEAD_LETTER_SINK"
IDEMPOTENCY_STORE_ENV: Final = "TASKS_IDEMPOTENCY_STORE"
AUTH_DISABLED_ENV: Final = "TASKS_AUTH_DISABLED"
HEADER_TIMEOUT_ENV: Final = "TASKS_HEADER_TIMEOUT_S"
BODY_TIMEOUT_ENV: Final = "TASKS_BODY_TIMEOUT_S"
_AUTH_ENVS: Final = (WORKER_ENV_ALLOWED_INVOKERS, WORKER_ENV_AUDIENCE, WORKER_ENV_CERTS_URL)

DEFAULT_PORT: Final = 8080
DEFAULT_HOST: Final = "0.0.0.0"
# Cloud Run sends SIGKILL 10 s after SIGTERM; keep 2 s for the last log lines.
DEFAULT_SHUTDOWN_GRACE_S: Final = 8.0
DEFAULT_IDEMPOTENCY_MAX_ENTRIES: Final = 100_000
# A day: well past the 1 hour (9 days for queue.yaml queues) in which Cloud Tasks
# refuses to re-create a task name after the task ran (CreateTaskRequest.task,
# https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues.tasks/create).
DEFAULT_IDEMPOTENCY_TTL_S: Final = 24 * 3600.0
DEFAULT_CERTS_MIN_REFRESH_S: Final = 30.0
# A request's header section, then its body (at most 1 MiB), must arrive within these.
DEFAULT_HEADER_TIMEOUT_S: Final = 10.0
DEFAULT_BODY_TIMEOUT_S: Final = 30.0

_EMAIL: Final = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")
_MODULE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_OBJECT: Final = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
)
# Cloud Storage bucket names (https://cloud.google.com/storage/docs/buckets#naming), dotless.
_BUCKET: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$")
_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """An environment variable has a value the worker cannot run with."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated worker settings; build with `Settings.from_env()`."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    audience: str | None = None
    allowed_invokers: frozenset[str] = frozenset()
    auth_disabled: bool = False  # TASKS_AUTH_DISABLED=true: no check, on purpose
    certs_url: str = GOOGLE_CERTS_URL
    project: str | None = None
    extra_modules: tuple[str, ...] = ()
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    idempotency_max_entries: int = DEFAULT_IDEMPOTENCY_MAX_ENTRIES
    idempotency_ttl_s: float = DEFAULT_IDEMPOTENCY_TTL_S
    certs_min_refresh_s: float = DEFAULT_CERTS_MIN_REFRESH_S
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    log_level: str = "INFO"
    dead_letter_sink: str | None = None  # "module:attribute"
    idempotency_store: str | None = None  # "module:attribute"
    queue_routing: QueueRouting | None = None  # TASKS_QUEUES/TASKS_ROUTES; None: one queue
    final_attempts: FinalAttempts | None = None  # TASKS_RETRY_POLICIES (+ TASKS_QUEUES)
    dead_letter_bucket: str | None = None  # TASKS_DEAD_LETTER_BUCKET
    trace_export: str | None = None  # TASKS_TRACE_EXPORT: OTLP base URL of the span export

    @property
    def auth_enabled(self) -> bool:
        """The token check is on whenever allowed invokers are configured."""
        return bool(self.allowed_invokers)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the settings; raises `ConfigError` naming the variable."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        auth = _auth_settings(env)
        extra = tuple(m.strip() for m in (get(EXTRA_MODULES_ENV) or "").split(",") if m.strip())
        for module in extra:
            if not _MODULE.match(module):
                raise ConfigError(
                    f"{EXTRA_MODULES_ENV}: {module!r} is not a dotted module name; "
                    "give comma-separated import paths like 'myteam.tasks,myteam.more_tasks'"
                )
        objects = {name: get(name) for name in (DEAD_LETTER_SINK_ENV, IDEMPOTENCY_STORE_ENV)}
        for name, spec in objects.items():
            if spec is not None and not _OBJECT.match(spec):
                raise ConfigError(
                    f"{name}={spec!r} is not 'module:attribute'; give e.g. "
                    "'myteam.sinks:FirestoreSink' (a class or factory called with no "
                    "arguments, or a ready instance)"
                )
        log_level = (get(LOG_LEVEL_ENV) or "INFO").upper()
        if log_level not in _LOG_LEVELS:
            raise ConfigError(f"{LOG_LEVEL_ENV}={log_level!r}: use one of {', '.join(_LOG_LEVELS)}")
        host = get(HOST_ENV) or DEFAULT_HOST
        try:
            # Not get(): a variable set but empty is an error, never "one queue, no check".
            queue_routing = parse_queue_routing(
                env.get(WORKER_ENV_QUEUES), env.get(WORKER_ENV_ROUTES)
            )
        except QueueRoutingError as exc:
            raise ConfigError(str(exc)) from None
        try:
            final_attempts = FinalAttempts.from_env(get(WORKER_ENV_RETRY_POLICIES))
        except FinalAttemptConfigError as exc:
            raise ConfigError(str(exc)) from None
        trace_export = get(WORKER_ENV_TRACE_EXPORT)
        if trace_export is not None:
            from service.span_export import TraceExportError, check_endpoint

            try:
                trace_export = check_endpoint(trace_export)
            except TraceExportError as exc:
                raise ConfigError(f"{WORKER_ENV_TRACE_EXPORT}={exc}") from None
        bucket = get(WORKER_ENV_DEAD_LETTER_BUCKET)
        if bucket is not None and not _BUCKET.match(bucket):
            raise ConfigError(
                f"{WORKER_ENV_DEAD_LETTER_BUCKET}={bucket!r} is not a bucket name: give the "
                "name only (3-63 lowercase letters, digits, - and _), not a gs:// URL"
            )
        settings = cls(
            host=host,
            port=_int(get(WORKER_ENV_PORT), WORKER_ENV_PORT, DEFAULT_PORT, low=0, high=65535),
            audience=auth.audience,
            allowed_invokers=auth.invokers,
            certs_url=auth.certs_url,
            auth_disabled=auth.disabled,
            project=get(PROJECT_ENV),
            extra_modules=extra,
            shutdown_grace_s=_float(
                get(SHUTDOWN_GRACE_ENV), SHUTDOWN_GRACE_ENV, DEFAULT_SHUTDOWN_GRACE_S
            ),
            idempotency_max_entries=_int(
                get(IDEMPOTENCY_MAX_ENTRIES_ENV),
                IDEMPOTENCY_MAX_ENTRIES_ENV,
                DEFAULT_IDEMPOTENCY_MAX_ENTRIES,
                low=1,
                high=10_000_000,
            ),
            idempotency_ttl_s=_float(
                get(IDEMPOTENCY_TTL_ENV), IDEMPOTENCY_TTL_ENV, DEFAULT_IDEMPOTENCY_TTL_S
            ),
            certs_min_refresh_s=_float(
                get(CERTS_REFRESH_MIN_INTERVAL_ENV),
                CERTS_REFRESH_MIN_INTERVAL_ENV,
                DEFAULT_CERTS_MIN_REFRESH_S,
            ),
            header_timeout_s=_timeout(
                get(HEADER_TIMEOUT_ENV), HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT_S
            ),
            body_timeout_s=_timeout(
                get(BODY_TIMEOUT_ENV), BODY_TIMEOUT_ENV, DEFAULT_BODY_TIMEOUT_S
            ),
            log_level=log_level,
            dead_letter_sink=objects[DEAD_LETTER_SINK_ENV],
            idempotency_store=objects[IDEMPOTENCY_STORE_ENV],
            queue_routing=queue_routing,
            final_attempts=final_attempts,
            dead_letter_bucket=bucket,
            trace_export=trace_export,
        )
        # Checked last, so a bad value elsewhere is reported as itself.
        if not auth.invokers and not auth.disabled and not is_loopback(host):
            raise ConfigError(
                f"the token check is off ({WORKER_ENV_ALLOWED_INVOKERS} is not set) and "
                f"{HOST_ENV}={host} is not a loopback address, so anyone who reaches it could "
                f"run tasks: set {WORKER_ENV_AUDIENCE} and {WORKER_ENV_ALLOWED_INVOKERS}, or "
                f"{HOST_ENV}=127.0.0.1, or {AUTH_DISABLED_ENV}=true to serve without the check "
                "(Cloud Run IAM as the only gate)"
            )
        return settings


@dataclass(frozen=True, slots=True)
class _Auth:
    audience: str | None
    invokers: frozenset[str]
    certs_url: str
    disabled: bool


def _auth_settings(env: Mapping[str, str]) -> _Auth:
    """The token check's settings. It fails closed: any sign that the check was meant
    to be on (a variable present but empty, an unresolved output, a stray comma, an
    audience or certs URL alone) stops the worker instead of turning the check off."""
    for name in _AUTH_ENVS:
        if name in env and not env[name].strip():
            raise ConfigError(
                f"{name} is set but empty: give its value, or unset it (an empty value "
                "never turns the token check off)"
            )
    raw_invokers = env.get(WORKER_ENV_ALLOWED_INVOKERS, "").strip() or None
    invokers = _parse_invokers(raw_invokers)
    audience = env.get(WORKER_ENV_AUDIENCE, "").strip() or None
    if raw_invokers is not None and not invokers:
        raise ConfigError(
            f"{WORKER_ENV_ALLOWED_INVOKERS}={raw_invokers!r} names no email: give the "
            "invoker service account's email (comma-separated for several), or unset "
            "the variable to run without the token check"
        )
    for name in (WORKER_ENV_AUDIENCE, WORKER_ENV_CERTS_URL):
        if name in env and not invokers:
            raise ConfigError(
                f"{name} is set but {WORKER_ENV_ALLOWED_INVOKERS} is not: the token check "
                "needs it; set it to the invoker service account's email, or unset "
                f"{name} to run without the check"
            )
    if invokers and audience is None:
        raise ConfigError(
            f"{WORKER_ENV_ALLOWED_INVOKERS} is set but {WORKER_ENV_AUDIENCE} is not: "
            "set it to the audience the tasks' OIDC tokens carry (the service URL or "
            "its custom audience)"
        )
    certs_url = env.get(WORKER_ENV_CERTS_URL, "").strip() or GOOGLE_CERTS_URL
    parts = urlsplit(certs_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"{WORKER_ENV_CERTS_URL}={certs_url!r} is not an http(s) URL: use "
            f"{GOOGLE_CERTS_URL} (the default) or the local issuer's /oauth2/v1/certs"
        )
    disabled = _flag(env, AUTH_DISABLED_ENV)
    if disabled and invokers:
        raise ConfigError(
            f"{AUTH_DISABLED_ENV}=true contradicts {WORKER_ENV_ALLOWED_INVOKERS}: unset one "
            "(the token check cannot be both on and off)"
        )
    return _Auth(audience, invokers, certs_url, disabled)


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise ConfigError(f"{name}={raw!r}: give true or false")
    return value == "true"


def is_loopback(host: str) -> bool:
    """Only this machine can connect to `host` (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere: not provably local


def _parse_invokers(raw: str | None) -> frozenset[str]:
    if raw is None:
        return frozenset()
    emails = [e.strip() for e in raw.split(",") if e.strip()]
    for email in emails:
        if not _EMAIL.match(email):
            raise ConfigError(
                f"{WORKER_ENV_ALLOWED_INVOKERS}: {email!r} is not an email address; give "
                "comma-separated service account emails like "
                "'tasks-invoker@PROJECT.iam.gserviceaccount.com'"
            )
    # Google lower-cases emails in ID tokens; compare case-insensitively.
    return frozenset(e.lower() for e in emails)


def _int(raw: str | None, name: str, default: int, *, low: int, high: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer: give a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range: give {low}..{high}")
    return value


def _timeout(raw: str | None, name: str, default: float) -> float:
    value = _float(raw, name, default)
    if value <= 0:
        raise ConfigError(f"{name}={raw!r}: a timeout must be above 0 seconds")
    return value


def _float(raw: str | None, name: str, default: float) -> float:
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number: give seconds, like 8 or 0.5") from None
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{name}={raw!r} must be a finite number of seconds >= 0")
    return value
