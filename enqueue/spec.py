"""One task, described and checked before any API call, then built with the
official message classes.

``TaskSpec`` holds what the caller chooses (type, payload, name or idempotency
key, delay or schedule time, dispatch deadline, extra headers, a queue override,
its own retry policy) and checks each field on construction. ``build_task``
combines it with the stack outputs into a ``tasks_v2.Task`` in the queue the type
is routed to (or the override), with that queue's default deadline: POST to
``service_url/tasks/{type}``, ``Content-Type: application/json``,
``X-Tasks-Not-Before`` (its schedule or creation time, from which the worker
bounds ``max_retry_duration``), the caller's trace (``enqueue.tracing``), an OIDC
token for ``invoker_email`` with ``audience``, and checks what needs the whole task
(its serialised size, header bytes, URL length).

This module deliberately does not talk to the API and does not choose names for
unnamed tasks: the enqueuer does that, once per task, before the first attempt.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import tasks_v2

from contract.durations import seconds_text
from contract.headers import header_name_problem, header_value_problem, reserved_header_reason
from contract.limits import (
    MAX_DISPATCH_DEADLINE_S,
    MAX_HEADERS_BYTES,
    MAX_SCHEDULE_AHEAD_S,
    MAX_TASK_BYTES,
    MAX_URL_CHARS,
    MIN_DISPATCH_DEADLINE_S,
    TASK_ID_MAX_CHARS,
    TASK_ID_PATTERN,
    WARN_TASK_BYTES,
)
from contract.names import HEADER_QUEUE_OVERRIDE, TASK_ROUTE_PREFIX
from contract.retry_policy import (
    HEADER_NOT_BEFORE,
    HEADER_TASK_RETRY_CONFIG,
    RetryPolicy,
    not_before_header,
)
from contract.routing import queue_for, queue_key_problem
from contract.task_types import task_type_problem
from enqueue.errors import TaskValidationError
from enqueue.outputs import StackOutputs
from enqueue.queues import QueueTarget
from enqueue.tracing import trace_headers

_TASK_ID = re.compile(TASK_ID_PATTERN)
_BAD_ID_CHAR = re.compile(r"[^A-Za-z0-9_-]")
CONTENT_TYPE = "Content-Type"
JSON_CONTENT_TYPE = "application/json"
_TASK_PB = tasks_v2.Task.pb()
_HTTP_REQUEST_PB = tasks_v2.HttpRequest.pb()
_OIDC_TOKEN_PB = tasks_v2.OidcToken.pb()
# 128 bits of the digest: collisions are out of reach and the id stays short.
HASHED_ID_HEX_CHARS = 32


def task_id_for_key(task_type: str, key: str) -> str:
    """The deterministic task id for an idempotency key.

    The hash spreads ids evenly, as Cloud Tasks advises (sequential names raise
    latency), and covers any key length or character. The type is part of the
    hashed text, so the same key used for two task types names two tasks.
    """
    digest = hashlib.sha256(f"{task_type}\n{key}".encode()).hexdigest()
    return digest[:HASHED_ID_HEX_CHARS]


def random_task_id() -> str:
    """A random task id, for tasks the caller did not name (hex, so evenly spread)."""
    return uuid.uuid4().hex


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_task_id(task_id: object, field_name: str = "name") -> str:
    """Check a literal task id against the Cloud Tasks rules and return it."""
    if not isinstance(task_id, str):
        raise TaskValidationError(
            field_name, f"must be a string task id, got {type(task_id).__name__}"
        )
    if "/" in task_id:
        raise TaskValidationError(
            field_name,
            f"{task_id!r} looks like a path: give the short task id (the part after /tasks/)",
        )
    if not task_id or len(task_id) > TASK_ID_MAX_CHARS:
        raise TaskValidationError(
            field_name,
            f"must be 1..{TASK_ID_MAX_CHARS} characters, got {len(task_id)}: "
            "shorten it, or pass it as an idempotency key (key=...) to have it hashed",
        )
    if _TASK_ID.fullmatch(task_id) is None:
        bad = "".join(sorted(set(_BAD_ID_CHAR.findall(task_id))))
        raise TaskValidationError(
            field_name,
            f"{task_id!r} contains characters Cloud Tasks does not allow ({bad!r}): use only "
            "letters, digits, '_' and '-', or pass it as an idempotency key (key=...) to "
            "have it hashed into a valid id",
        )
    return task_id


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What to enqueue. Checked on construction; raises ``TaskValidationError``.

    Attributes:
        type: task type, the last segment of ``service_url/tasks/{type}``.
        data: JSON-serialisable payload (default ``{}``); ignored when ``body`` is set.
        body: raw bytes sent as the body instead of ``data`` as JSON.
        name: literal task id (letters, digits, ``_``, ``-``; 1..500 chars).
        key: idempotency key, hashed into the task id (see ``task_id_for_key``).
        delay: seconds from now before the first attempt (0..30 days).
        schedule_time: absolute time of the first attempt (timezone-aware).
        deadline: dispatch deadline in seconds (15..1800); otherwise the queue's
            ``dispatch_deadlines`` entry (``dispatch_deadline`` for the default queue of
            older stacks), or Cloud Tasks' default (10 min) without one.
        headers: extra HTTP headers for the worker request.
        queue: a queue key (``email``) overriding the type's route in ``routes``.
        retry: the task's own retry policy (``Task.retry_config``, which overrides the
            queue's); also sent as ``X-Tasks-Retry-Config`` so the worker knows which
            attempt is the last and records it as a dead letter.
    """

    type: str
    data: Any = field(default_factory=dict)
    body: bytes | None = None
    name: str | None = None
    key: str | None = None
    delay: float | None = None
    schedule_time: datetime | None = None
    deadline: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    queue: str | None = None
    retry: RetryPolicy | None = None

    def __post_init__(self) -> None:
        self._check_type()
        self._check_queue()
        self._check_identity()
        self._check_timing()
        self._check_headers()
        if self.retry is not None and not isinstance(self.retry, RetryPolicy):
            raise TaskValidationError(
                "retry", f"must be a contract.retry_policy.RetryPolicy, got {self.retry!r}"
            )
        if self.body is not None and not isinstance(self.body, bytes):
            raise TaskValidationError(
                "body", f"must be bytes, got {type(self.body).__name__}: use data= for JSON"
            )

    def _check_type(self) -> None:
        problem = task_type_problem(self.type)
        if problem is not None:
            raise TaskValidationError("type", problem)

    def _check_queue(self) -> None:
        if self.queue is None:
            return
        if not isinstance(self.queue, str):
            raise TaskValidationError(
                "queue", f"must be a queue key such as email, got {type(self.queue).__name__}"
            )
        problem = queue_key_problem(self.queue)
        if problem is not None:
            raise TaskValidationError("queue", problem)

    def _check_identity(self) -> None:
        if self.name is not None and self.key is not None:
            raise TaskValidationError(
                "name", "give either a literal task name or an idempotency key, not both"
            )
        if self.name is not None:
            validate_task_id(self.name)
        if self.key is not None and (not isinstance(self.key, str) or not self.key):
            raise TaskValidationError("key", "the idempotency key must be a non-empty string")

    def _check_timing(self) -> None:
        if self.delay is not None and self.schedule_time is not None:
            raise TaskValidationError("delay", "give either a delay or a schedule time, not both")
        if self.delay is not None:
            if not _is_number(self.delay) or not math.isfinite(self.delay):
                raise TaskValidationError(
                    "delay", f"must be a number of seconds, got {self.delay!r}"
                )
            if not 0 <= self.delay <= MAX_SCHEDULE_AHEAD_S:
                raise TaskValidationError(
                    "delay",
                    f"{seconds_text(self.delay)} s is outside 0..{MAX_SCHEDULE_AHEAD_S} s: "
                    "Cloud Tasks schedules at most 30 days ahead; store the work and enqueue it "
                    "later",
                )
        if self.schedule_time is not None:
            if not isinstance(self.schedule_time, datetime):
                raise TaskValidationError(
                    "schedule_time", f"must be a datetime, got {self.schedule_time!r}"
                )
            if self.schedule_time.tzinfo is None:
                raise TaskValidationError(
                    "schedule_time",
                    "must be timezone-aware, e.g. datetime.now(UTC) + timedelta(minutes=5) "
                    "or an RFC 3339 time ending in Z",
                )
        if self.deadline is not None:
            if not _is_number(self.deadline) or not math.isfinite(self.deadline):
                raise TaskValidationError(
                    "deadline", f"must be a number of seconds, got {self.deadline!r}"
                )
            if not MIN_DISPATCH_DEADLINE_S <= self.deadline <= MAX_DISPATCH_DEADLINE_S:
                raise TaskValidationError(
                    "deadline",
                    f"{seconds_text(self.deadline)} s is outside {MIN_DISPATCH_DEADLINE_S}.."
                    f"{MAX_DISPATCH_DEADLINE_S} s, the dispatch deadline Cloud Tasks allows "
                    "for HTTP targets: pick a value in that range",
                )

    def _check_headers(self) -> None:
        if not isinstance(self.headers, Mapping):
            raise TaskValidationError(
                "headers", f"must be a mapping of name to value, got {type(self.headers).__name__}"
            )
        for name, value in self.headers.items():
            problem = header_name_problem(name)
            if problem is not None:
                raise TaskValidationError("headers", problem)
            problem = header_value_problem(name, value)
            if problem is not None:
                raise TaskValidationError("headers", f"{problem}, got {value!r}")
            # Every task carries the invoker's OIDC token, so Authorization is reserved.
            reason = reserved_header_reason(name, with_token=True)
            if reason is not None:
                raise TaskValidationError("headers", f"{reason}: remove it")

    def task_id(self) -> str | None:
        """The id this spec names, if any: the literal name or the hashed key."""
        if self.name is not None:
            return self.name
        if self.key is not None:
            return task_id_for_key(self.type, self.key)
        return None

    def payload(self) -> bytes:
        """The request body: ``body`` as given, or ``data`` as compact UTF-8 JSON."""
        if self.body is not None:
            return self.body
        try:
            text = json.dumps(self.data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TaskValidationError(
                "data",
                f"is not JSON-serialisable ({exc}): convert it to str, numbers, bools, None, "
                "lists and dicts with string keys, or send raw bytes with body=",
            ) from None
        return text.encode("utf-8")


@dataclass(frozen=True, slots=True)
class BuiltTask:
    """A task ready to create, the queue it goes to, and the size warnings found."""

    task: tasks_v2.Task
    size: int
    warnings: tuple[str, ...]
    target: QueueTarget


def build_task(
    spec: TaskSpec, outputs: StackOutputs, *, task_id: str, now: datetime | None = None
) -> BuiltTask:
    """Build the ``tasks_v2.Task`` for ``spec`` named ``task_id`` in the queue of its route.

    Raises:
        TaskValidationError: the URL, the headers or the whole task is too large,
            the schedule time is more than 30 days ahead, or ``spec.queue`` is not a
            queue of the stack.
    """
    validate_task_id(task_id)
    target = outputs.target(spec.type, spec.queue)
    url = outputs.service_url.rstrip("/") + TASK_ROUTE_PREFIX + spec.type
    if len(url) > MAX_URL_CHARS:
        raise TaskValidationError(
            "type", f"the task URL is {len(url)} characters, over {MAX_URL_CHARS}: shorten it"
        )
    headers = {CONTENT_TYPE: JSON_CONTENT_TYPE}
    for name, value in spec.headers.items():
        # A caller-given Content-Type (for raw bodies) replaces the default one.
        if name.lower() == CONTENT_TYPE.lower():
            del headers[CONTENT_TYPE]
        headers[name] = value
    # The caller's trace (an active OpenTelemetry span): the worker continues it.
    headers.update(trace_headers(headers))
    if spec.queue is not None and spec.queue != queue_for(spec.type, outputs.stack_queues.routes):
        # A deliberate override: the worker accepts the task on this queue instead of
        # refusing it as misrouted (service.queues).
        headers[HEADER_QUEUE_OVERRIDE] = spec.queue
    header_bytes = sum(len(k.encode()) + len(v.encode()) for k, v in headers.items())
    if header_bytes >= MAX_HEADERS_BYTES:
        raise TaskValidationError(
            "headers",
            f"{header_bytes} bytes of headers; Cloud Tasks requires less than "
            f"{MAX_HEADERS_BYTES}: move the data into the body",
        )
    now = now or datetime.now(UTC)
    schedule_time: datetime | None = spec.schedule_time
    if spec.delay is not None:
        schedule_time = now + timedelta(seconds=spec.delay)
    elif schedule_time is not None and schedule_time - now > timedelta(
        seconds=MAX_SCHEDULE_AHEAD_S
    ):
        raise TaskValidationError(
            "schedule_time",
            f"{schedule_time.isoformat()} is more than 30 days ahead: Cloud Tasks "
            "schedules at most 30 days ahead; store the work and enqueue it later",
        )
    # No attempt can come before this: the worker measures max_retry_duration from it
    # when it decides whether a failing attempt is the last (contract.retry_policy).
    headers.setdefault(HEADER_NOT_BEFORE, not_before_header(schedule_time or now))
    if spec.retry is not None:
        headers[HEADER_TASK_RETRY_CONFIG] = json.dumps(spec.retry.to_json(), separators=(",", ":"))
    # The protobuf classes under the official proto-plus wrappers: building them
    # directly and wrapping once (no copy) costs a fraction of proto-plus field
    # marshalling, which dominated the client's CPU in bulk runs.
    pb = _TASK_PB(
        name=outputs.task_path(task_id, target.path),
        http_request=_HTTP_REQUEST_PB(
            http_method=tasks_v2.HttpMethod.POST,
            url=url,
            headers=headers,
            body=spec.payload(),
            oidc_token=_OIDC_TOKEN_PB(
                service_account_email=outputs.invoker_email, audience=outputs.audience
            ),
        ),
    )
    if schedule_time is not None:
        pb.schedule_time.FromDatetime(schedule_time)
    if spec.retry is not None:
        _set_retry_config(pb.retry_config, spec.retry)
    # The queue's deadline unless the task sets its own: the worker's request timeout
    # was checked against it, not against Cloud Tasks' 10-minute default.
    deadline = spec.deadline if spec.deadline is not None else target.deadline_s
    if deadline is not None:
        pb.dispatch_deadline.FromTimedelta(timedelta(seconds=deadline))
    task = tasks_v2.Task.wrap(pb)
    size = pb.ByteSize()
    if size > MAX_TASK_BYTES:
        raise TaskValidationError(
            "data",
            f"the task is {size} bytes, over the {MAX_TASK_BYTES}-byte (1 MiB) limit of Cloud "
            "Tasks: store the payload elsewhere (e.g. Cloud Storage) and send a reference",
        )
    found: tuple[str, ...] = ()
    if size > WARN_TASK_BYTES:
        found = (
            f"task {task_id} is {size} bytes, over the {WARN_TASK_BYTES}-byte limit the API "
            "reference states (the quota allows 1 MiB): consider sending a reference instead",
        )
    return BuiltTask(task=task, size=size, warnings=found, target=target)


def _set_retry_config(pb: Any, policy: RetryPolicy) -> None:
    """`Task.retry_config` (task.proto field 12, google-cloud-tasks >= 2.26)."""
    pb.max_attempts = policy.max_attempts
    pb.max_doublings = policy.max_doublings
    pb.min_backoff.FromTimedelta(timedelta(seconds=policy.min_backoff))
    pb.max_backoff.FromTimedelta(timedelta(seconds=policy.max_backoff))
    pb.max_retry_duration.FromTimedelta(timedelta(seconds=policy.max_retry_duration))
