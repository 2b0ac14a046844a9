"""Every request rule of the emulator: names, fields, queue settings, tasks, filters.

It owns what CreateQueue/UpdateQueue/CreateTask/ListQueues accept and the
defaults Google fills in (:func:`normalise_queue`), each failure an
INVALID_ARGUMENT whose message says how to fix the request. The rules follow
the field docs of google.cloud.tasks.v2 (queue.proto, task.proto, target.proto,
https://cloud.google.com/tasks/docs/reference/rpc/google.cloud.tasks.v2).

Pure functions only: no state, no clock (the caller passes ``now``), no I/O.
It deliberately does not look queues or tasks up (NOT_FOUND and ALREADY_EXISTS
are the core's) and holds no retry arithmetic (that is emulator/retry.py).
"""

from __future__ import annotations

import math
import re
from typing import Any, Final
from urllib.parse import urlsplit

from google.cloud import tasks_v2

from contract.headers import (
    HOP_BY_HOP_HEADERS,
    header_name_problem,
    header_value_problem,
    reserved_header_reason,
)
from contract.limits import (
    DEFAULT_DISPATCH_DEADLINE_S,
    MAX_CONCURRENT_DISPATCHES,
    MAX_DISPATCH_DEADLINE_S,
    MAX_DISPATCHES_PER_SECOND,
    MAX_HEADERS_BYTES,
    MAX_SCHEDULE_AHEAD_S,
    MAX_TASK_BYTES,
    MAX_URL_CHARS,
    MIN_DISPATCH_DEADLINE_S,
    QUEUE_ID_MAX_CHARS,
    QUEUE_ID_PATTERN,
    TASK_ID_MAX_CHARS,
    TASK_ID_PATTERN,
)
from emulator.errors import invalid

_PROJECT = r"[A-Za-z0-9][A-Za-z0-9.:_-]{0,127}"
_LOCATION = r"[A-Za-z0-9][A-Za-z0-9-]{0,62}"
LOCATION_RE: Final = re.compile(rf"projects/({_PROJECT})/locations/({_LOCATION})")
QUEUE_ID_RE: Final = re.compile(QUEUE_ID_PATTERN)
TASK_ID_RE: Final = re.compile(TASK_ID_PATTERN)


def check_location(parent: str) -> None:
    if not LOCATION_RE.fullmatch(parent):
        raise invalid(
            f"Invalid parent {parent!r}: expected projects/PROJECT_ID/locations/LOCATION_ID"
        )


def split_queue_name(name: str) -> tuple[str, str]:
    """``projects/P/locations/L/queues/Q`` -> (``projects/P/locations/L``, ``Q``)."""
    parent, sep, queue_id = name.rpartition("/queues/")
    if not sep or not LOCATION_RE.fullmatch(parent):
        raise invalid(
            f"Invalid queue name {name!r}: expected "
            "projects/PROJECT_ID/locations/LOCATION_ID/queues/QUEUE_ID"
        )
    if not QUEUE_ID_RE.fullmatch(queue_id):
        raise invalid(
            f"Invalid queue id {queue_id[:120]!r}: a queue id is 1 to {QUEUE_ID_MAX_CHARS} "
            "characters of letters, digits and hyphens ([A-Za-z0-9-])"
        )
    return parent, queue_id


def split_task_name(name: str) -> tuple[str, str]:
    """``.../queues/Q/tasks/T`` -> (queue name, ``T``)."""
    queue, sep, task_id = name.rpartition("/tasks/")
    if not sep:
        raise invalid(
            f"Invalid task name {name[:200]!r}: expected "
            "projects/PROJECT_ID/locations/LOCATION_ID/queues/QUEUE_ID/tasks/TASK_ID"
        )
    split_queue_name(queue)
    if not TASK_ID_RE.fullmatch(task_id):
        raise invalid(
            f"Invalid task id {task_id[:120]!r}: a task id is 1 to {TASK_ID_MAX_CHARS} "
            "characters of letters, digits, hyphens and underscores ([A-Za-z0-9_-])"
        )
    return queue, task_id


def check_url(url: str, what: str = "HttpRequest.url") -> None:
    if len(url) > MAX_URL_CHARS:
        raise invalid(f"{what} is {len(url)} characters long; the maximum is {MAX_URL_CHARS}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise invalid(f"{what} {url[:200]!r} is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid(
            f"{what} {url[:200]!r} must be an absolute http:// or https:// URL with a host"
        )
    if port == 0:
        raise invalid(f"{what} {url[:200]!r} has port 0")
    if any(c in url for c in "\r\n\x00 "):
        raise invalid(f"{what} must not contain spaces or control characters")


def check_headers(headers: dict[str, str], what: str = "HttpRequest.headers") -> None:
    total = 0
    for key, value in headers.items():
        problem = header_name_problem(key) or header_value_problem(key, value)
        if problem is None and key.lower() in HOP_BY_HOP_HEADERS:
            # Could change how the delivered request is framed (RFC 9110 section 7.6.1).
            problem = reserved_header_reason(key)
        if problem is not None:
            raise invalid(f"{what}: {problem}")
        total += len(key.encode()) + len(value.encode())
    if total >= MAX_HEADERS_BYTES:
        raise invalid(
            f"{what} are {total} bytes in total; Cloud Tasks requires less than "
            f"{MAX_HEADERS_BYTES} bytes"
        )


def is_reserved_header(key: str) -> bool:
    """A header Cloud Tasks computes, replaces or ignores (`contract.headers`): the
    emulator drops it from the request it delivers. `Authorization` is kept here; an
    OIDC token replaces it afterwards, as Cloud Tasks does."""
    return reserved_header_reason(key, with_token=False) is not None


def check_email(email: str, what: str) -> None:
    if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
        raise invalid(f"{what} {email[:100]!r} is not a service account email")


# google.protobuf Timestamp/Duration ranges: values outside them cannot be
# rendered as JSON, so they are rejected up front rather than breaking REST reads.
_MIN_TIMESTAMP_S: Final = -62_135_596_800  # 0001-01-01T00:00:00Z
_MAX_TIMESTAMP_S: Final = 253_402_300_799  # 9999-12-31T23:59:59Z
_MAX_DURATION_S: Final = 315_576_000_000


def check_timestamp(ts: Any, what: str) -> None:
    if not _MIN_TIMESTAMP_S <= ts.seconds <= _MAX_TIMESTAMP_S or not 0 <= ts.nanos < 10**9:
        raise invalid(f"{what} is not a valid timestamp (years 0001..9999, nanos 0..999999999)")


def check_duration(d: Any, what: str) -> None:
    if (
        not -_MAX_DURATION_S <= d.seconds <= _MAX_DURATION_S
        or not -(10**9) < d.nanos < 10**9
        or (d.seconds > 0 and d.nanos < 0)
        or (d.seconds < 0 and d.nanos > 0)
    ):
        raise invalid(f"{what} is not a valid duration")


def duration_s(d: Any) -> float:
    """A google.protobuf.Duration in seconds."""
    return float(d.ToNanoseconds()) / 1e9


# -- queues -------------------------------------------------------------------

# Google's defaults for a queue created without rate limits or retry config
# (RateLimits and RetryConfig field docs in queue.proto).
DEFAULT_RATE: Final = MAX_DISPATCHES_PER_SECOND
DEFAULT_CONCURRENCY: Final = 1000
DEFAULT_MAX_ATTEMPTS: Final = 100
DEFAULT_MIN_BACKOFF_NS: Final = 100_000_000
DEFAULT_MAX_BACKOFF_S: Final = 3600
DEFAULT_MAX_DOUBLINGS: Final = 16

UPDATABLE_QUEUE_PATHS: Final = frozenset(
    {
        "rate_limits",
        "rate_limits.max_dispatches_per_second",
        "rate_limits.max_concurrent_dispatches",
        "retry_config",
        "retry_config.max_attempts",
        "retry_config.max_retry_duration",
        "retry_config.min_backoff",
        "retry_config.max_backoff",
        "retry_config.max_doublings",
        "stackdriver_logging_config",
        "stackdriver_logging_config.sampling_ratio",
        "http_target",
        "http_target.uri_override",
        "http_target.http_method",
        "http_target.header_overrides",
        "http_target.oidc_token",
        "http_target.oauth_token",
        "app_engine_routing_override",
    }
)

_State = tasks_v2.Queue.State
_QUEUE_STATES: Final[dict[str, int]] = {
    "RUNNING": _State.RUNNING,
    "PAUSED": _State.PAUSED,
    "DISABLED": _State.DISABLED,
}


def burst_for(rate: float) -> int:
    """max_burst_size derived from the rate: queue.proto says it is "generally at
    least equal to max_dispatches_per_second", so one second's worth of tokens."""
    return max(1, math.ceil(rate))


def check_update_mask(paths: list[str]) -> None:
    for path in paths:
        if path not in UPDATABLE_QUEUE_PATHS:
            raise invalid(
                f"update_mask path {path[:100]!r} cannot be updated; updatable paths are "
                + ", ".join(sorted(UPDATABLE_QUEUE_PATHS))
            )


def parse_queue_filter(text: str) -> int | None:
    """ListQueuesRequest.filter: the emulator supports ``state: STATE`` only."""
    if not text.strip():
        return None
    key, sep, value = text.partition(":")
    if sep and key.strip() == "state" and value.strip() in _QUEUE_STATES:
        return _QUEUE_STATES[value.strip()]
    raise invalid(
        f"Unsupported filter {text[:100]!r}: the emulator supports 'state: RUNNING', "
        "'state: PAUSED' and 'state: DISABLED'"
    )


def _normalise_rate_limits(rl: Any) -> None:
    if rl.max_dispatches_per_second == 0:
        rl.max_dispatches_per_second = DEFAULT_RATE
    if not 0 < rl.max_dispatches_per_second <= MAX_DISPATCHES_PER_SECOND or math.isnan(
        rl.max_dispatches_per_second
    ):
        raise invalid(
            "RateLimits.max_dispatches_per_second must be greater than 0 and at most "
            f"{MAX_DISPATCHES_PER_SECOND:g}; got {rl.max_dispatches_per_second}"
        )
    if rl.max_concurrent_dispatches == 0:
        rl.max_concurrent_dispatches = DEFAULT_CONCURRENCY
    if not 0 < rl.max_concurrent_dispatches <= MAX_CONCURRENT_DISPATCHES:
        raise invalid(
            "RateLimits.max_concurrent_dispatches must be between 1 and "
            f"{MAX_CONCURRENT_DISPATCHES}; got {rl.max_concurrent_dispatches}"
        )
    # Output only: always derived from the rate.
    rl.max_burst_size = burst_for(rl.max_dispatches_per_second)


def _check_retry_fields(rc: Any, what: str) -> None:
    """The ranges RetryConfig's field docs give (queue.proto), for fields that are set."""
    if rc.max_attempts < -1:
        raise invalid(
            f"{what}.max_attempts must be -1 (unlimited) or positive; got {rc.max_attempts}"
        )
    for label in ("min_backoff", "max_backoff", "max_retry_duration"):
        if not rc.HasField(label):
            continue
        d = getattr(rc, label)
        if d.seconds < 0 or d.nanos < 0:
            raise invalid(f"{what}.{label} must not be negative")
        check_duration(d, f"{what}.{label}")
    if rc.max_doublings < 0:
        raise invalid(f"{what}.max_doublings must be >= 0; got {rc.max_doublings}")


def check_backoff_order(min_backoff: float, max_backoff: float, what: str) -> None:
    if min_backoff > max_backoff:
        raise invalid(
            f"{what}.min_backoff must not exceed max_backoff ({min_backoff:g}s > {max_backoff:g}s)"
        )


def _truncate_to_seconds(rc: Any, *labels: str) -> None:
    """RetryConfig durations "will be truncated to the nearest second" (queue.proto)."""
    for label in labels:
        if rc.HasField(label):
            getattr(rc, label).nanos = 0


def _normalise_retry_config(rc: Any) -> None:
    if rc.max_attempts == 0:
        rc.max_attempts = DEFAULT_MAX_ATTEMPTS
    _check_retry_fields(rc, "RetryConfig")
    if not rc.HasField("min_backoff"):
        rc.min_backoff.FromNanoseconds(DEFAULT_MIN_BACKOFF_NS)
    elif rc.min_backoff.ToNanoseconds() != DEFAULT_MIN_BACKOFF_NS:
        # The default itself is kept: GetQueue answers it ("0.100s"), and an update that
        # sends the queue back (gcloud's, update_queue(get_queue(...))) or a restart that
        # reads it again must not turn it into 0 s, which would retry without any backoff.
        _truncate_to_seconds(rc, "min_backoff")
    if not rc.HasField("max_backoff"):
        rc.max_backoff.seconds = DEFAULT_MAX_BACKOFF_S
    else:
        _truncate_to_seconds(rc, "max_backoff")
    rc.max_retry_duration.nanos = 0  # 0 s means unlimited
    if rc.max_doublings == 0:
        rc.max_doublings = DEFAULT_MAX_DOUBLINGS
    check_backoff_order(duration_s(rc.min_backoff), duration_s(rc.max_backoff), "RetryConfig")


def check_task_retry_config(rc: Any) -> None:
    """Task.retry_config (task.proto): the same ranges as a queue's, durations truncated
    to whole seconds; fields left unset are the queue's, so no defaults are filled in."""
    _check_retry_fields(rc, "Task.retry_config")
    _truncate_to_seconds(rc, "min_backoff", "max_backoff", "max_retry_duration")


def normalise_queue(pb: Any) -> None:
    """Fill Google's defaults into a Queue protobuf, truncate durations, validate."""
    _normalise_rate_limits(pb.rate_limits)
    _normalise_retry_config(pb.retry_config)
    ratio = pb.stackdriver_logging_config.sampling_ratio
    if not 0.0 <= ratio <= 1.0:
        raise invalid(f"StackdriverLoggingConfig.sampling_ratio must be in [0, 1]; got {ratio}")
    if pb.HasField("http_target"):
        check_http_target(pb.http_target)
    if pb.HasField("app_engine_routing_override"):
        override = pb.app_engine_routing_override
        check_app_engine_routing(override, "Queue.app_engine_routing_override")


def check_http_target(ht: Any) -> None:
    """A queue's HttpTarget (target.proto): uri_override, header_overrides, tokens."""
    if ht.HasField("uri_override"):
        check_uri_override(ht.uri_override)
    if ht.http_method and ht.http_method not in METHOD_NAMES:
        raise invalid(f"HttpTarget.http_method {ht.http_method} is not a valid HTTP method")
    headers = {h.header.key: h.header.value for h in ht.header_overrides}
    check_headers(headers, "HttpTarget.header_overrides")
    if ht.HasField("oidc_token"):
        # A queue-level OIDC token needs both fields (HttpTarget.oidc_token, target.proto).
        check_email(
            ht.oidc_token.service_account_email,
            "HttpTarget.oidc_token.service_account_email",
        )
        if not ht.oidc_token.audience:
            raise invalid(
                "HttpTarget.oidc_token.audience is required on a queue-level OIDC token: "
                "set it to the worker's URL or custom audience"
            )
    if ht.HasField("oauth_token"):
        raise invalid("OAuth access tokens are not emulated: use oidc_token for HTTP targets")


_UO = tasks_v2.UriOverride
_SCHEMES: Final = frozenset({_UO.Scheme.SCHEME_UNSPECIFIED, _UO.Scheme.HTTP, _UO.Scheme.HTTPS})
_ENFORCE_MODES: Final = frozenset(
    {
        _UO.UriOverrideEnforceMode.URI_OVERRIDE_ENFORCE_MODE_UNSPECIFIED,
        _UO.UriOverrideEnforceMode.IF_NOT_EXISTS,
        _UO.UriOverrideEnforceMode.ALWAYS,
    }
)
# Never valid in a URL (RFC 3986 section 2): controls, space, and in a host the delimiters.
_URL_FORBIDDEN: Final = frozenset(chr(c) for c in (*range(0x21), 0x7F))
_HOST_FORBIDDEN: Final = _URL_FORBIDDEN | frozenset("/?#@\\")


def check_uri_override(uo: Any) -> None:
    """HttpTarget.uri_override (target.proto UriOverride): each part must make a URL."""
    what = "HttpTarget.uri_override"
    if uo.scheme not in _SCHEMES:
        raise invalid(f"{what}.scheme {uo.scheme} is not HTTP (1) or HTTPS (2)")
    if uo.uri_override_enforce_mode not in _ENFORCE_MODES:
        raise invalid(
            f"{what}.uri_override_enforce_mode {uo.uri_override_enforce_mode} is not "
            "IF_NOT_EXISTS (1) or ALWAYS (2)"
        )
    if uo.HasField("host") and not uo.host:
        raise invalid(f"{what}.host cannot be an empty string")
    if uo.HasField("host") and (_HOST_FORBIDDEN & set(uo.host) or len(uo.host) > 253):
        raise invalid(f"{what}.host {uo.host[:100]!r} is not a host name")
    if uo.HasField("port") and not 0 <= uo.port <= 65535:
        raise invalid(f"{what}.port must be 0..65535; got {uo.port}")
    path = uo.path_override.path
    if path and not path.startswith("/"):
        raise invalid(f"{what}.path_override.path must start with '/'")
    for label, text in (
        ("path_override.path", path),
        ("query_override.query_params", uo.query_override.query_params),
    ):
        if _URL_FORBIDDEN & set(text) or "#" in text or len(text) > MAX_URL_CHARS:
            raise invalid(
                f"{what}.{label} {text[:100]!r} must not contain spaces, control characters "
                f"or '#', and is at most {MAX_URL_CHARS} characters"
            )


# -- tasks --------------------------------------------------------------------

_M = tasks_v2.HttpMethod
METHOD_NAMES: Final[dict[int, str]] = {
    _M.POST: "POST",
    _M.GET: "GET",
    _M.HEAD: "HEAD",
    _M.PUT: "PUT",
    _M.DELETE: "DELETE",
    _M.PATCH: "PATCH",
    _M.OPTIONS: "OPTIONS",
}
BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
_VIEWS: Final = (tasks_v2.Task.View.BASIC, tasks_v2.Task.View.FULL)


def check_view(view: int) -> int:
    """A request's response_view; unspecified means BASIC (task.proto)."""
    if view == tasks_v2.Task.View.VIEW_UNSPECIFIED:
        return tasks_v2.Task.View.BASIC
    if view not in _VIEWS:
        raise invalid(f"Unknown response_view {view}: use BASIC (1) or FULL (2)")
    return view


def check_http_request(hr: Any, queue: Any) -> None:
    """A task's HttpRequest against its queue; fills the default method (POST)."""
    if hr.http_method == tasks_v2.HttpMethod.HTTP_METHOD_UNSPECIFIED:
        hr.http_method = tasks_v2.HttpMethod.POST
    method = METHOD_NAMES.get(hr.http_method)
    if method is None:
        raise invalid(f"HttpRequest.http_method {hr.http_method} is not a valid HTTP method")
    uri_override = queue.http_target.uri_override if queue.HasField("http_target") else None
    if hr.url:
        check_url(hr.url)
    elif uri_override is None or not uri_override.HasField("host"):
        raise invalid(
            "HttpRequest.url is required (an absolute http:// or https:// URL), "
            "unless the queue's http_target.uri_override sets the host"
        )
    if hr.body and method not in BODY_METHODS:
        raise invalid(
            f"HttpRequest.body may only be set for POST, PUT and PATCH; the method is {method}"
        )
    check_headers(dict(hr.headers))
    if hr.HasField("oauth_token"):
        raise invalid("OAuth access tokens are not emulated: use oidc_token for HTTP targets")
    if hr.HasField("oidc_token"):
        check_email(hr.oidc_token.service_account_email, "OidcToken.service_account_email")


def check_new_task_name(name: str, queue_name: str) -> None:
    task_queue, _ = split_task_name(name)
    if task_queue != queue_name:
        raise invalid(f"Task.name {name} is not in the queue {queue_name}")


def check_schedule_time(ts: Any, now: float) -> float:
    """Task.schedule_time in seconds; at most 30 days ahead (task.proto)."""
    check_timestamp(ts, "Task.schedule_time")
    eta = float(ts.ToNanoseconds()) / 1e9
    if eta - now > MAX_SCHEDULE_AHEAD_S:
        raise invalid(
            "Task.schedule_time is more than 30 days in the future; "
            "Cloud Tasks accepts at most 30 days ahead"
        )
    return eta


def check_dispatch_deadline(d: Any, *, app_engine: bool = False) -> None:
    """Task.dispatch_deadline (task.proto): 15 s to 30 min for HTTP targets, 15 s to
    24 h 15 s for App Engine targets."""
    check_duration(d, "Task.dispatch_deadline")
    deadline = duration_s(d)
    upper, kind = (
        (MAX_APP_ENGINE_DISPATCH_DEADLINE_S, "App Engine")
        if app_engine
        else (MAX_DISPATCH_DEADLINE_S, "HTTP")
    )
    if not MIN_DISPATCH_DEADLINE_S <= deadline <= upper:
        raise invalid(
            f"Task.dispatch_deadline must be between {MIN_DISPATCH_DEADLINE_S}s and "
            f"{upper}s for {kind} tasks; got {deadline:g}s"
        )


# -- App Engine targets ---------------------------------------------------------

MAX_APP_ENGINE_DISPATCH_DEADLINE_S: Final = 24 * 3600 + 15
# AppEngineHttpRequest.body: "allowed only if the HTTP method is POST or PUT".
APP_ENGINE_BODY_METHODS: Final = frozenset({"POST", "PUT"})
# Service, version and instance ids become DNS labels of AppEngineRouting.host.
APP_ENGINE_ID_RE: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def check_app_engine_routing(routing: Any, what: str) -> None:
    """AppEngineRouting (target.proto): each id set must be a host name label;
    ``host`` is output only and is replaced."""
    for label in ("service", "version", "instance"):
        value = getattr(routing, label)
        if value and not APP_ENGINE_ID_RE.fullmatch(value):
            raise invalid(
                f"{what}.{label} {value[:100]!r} is not an App Engine id: letters, digits "
                "and hyphens, at most 63, not starting or ending with a hyphen"
            )


def check_app_engine_request(req: Any) -> None:
    """A task's AppEngineHttpRequest (target.proto); fills the default method (POST)
    and relative URI ("/")."""
    if req.http_method == tasks_v2.HttpMethod.HTTP_METHOD_UNSPECIFIED:
        req.http_method = tasks_v2.HttpMethod.POST
    method = METHOD_NAMES.get(req.http_method)
    if method is None:
        raise invalid(
            f"AppEngineHttpRequest.http_method {req.http_method} is not a valid HTTP method"
        )
    if not req.relative_uri:
        req.relative_uri = "/"
    uri = req.relative_uri
    if not uri.startswith("/") or uri.startswith("//"):
        raise invalid(
            f"AppEngineHttpRequest.relative_uri {uri[:100]!r} must begin with a single '/' "
            "(a path, optionally with a query string)"
        )
    if _URL_FORBIDDEN & set(uri) or "#" in uri or len(uri) > MAX_URL_CHARS:
        raise invalid(
            f"AppEngineHttpRequest.relative_uri {uri[:100]!r} must not contain spaces, "
            f"control characters or '#', and is at most {MAX_URL_CHARS} characters"
        )
    if req.body and method not in APP_ENGINE_BODY_METHODS:
        raise invalid(
            f"AppEngineHttpRequest.body may only be set for POST and PUT; the method is {method}"
        )
    check_headers(dict(req.headers), "AppEngineHttpRequest.headers")
    check_app_engine_routing(req.app_engine_routing, "AppEngineHttpRequest.app_engine_routing")


def dispatch_deadline_s(d: Any) -> float:
    return duration_s(d) or DEFAULT_DISPATCH_DEADLINE_S


def check_task_size(size: int) -> None:
    """The 1 MiB task size limit (https://cloud.google.com/tasks/docs/quotas)."""
    if size > MAX_TASK_BYTES:
        raise invalid(
            f"Task size too large: {size} bytes; the maximum task size is "
            f"{MAX_TASK_BYTES} bytes (1 MiB)"
        )
