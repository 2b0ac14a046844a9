"""What a handler knows about the delivery it is handling.

`TaskContext` is built from the `X-CloudTasks-*` headers and
`X-Cloud-Trace-Context` (names in `contract.names`). Those headers are
informational: they are never an identity, and a malformed one becomes None
(with a warning in the log) rather than a rejected task, because Cloud Tasks
sets them and a handler must not fail on what it cannot fix. The caller's
identity, when the token check is on, is `invoker_email`, taken from the
verified token only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from contract.names import (
    HEADER_ETA,
    HEADER_EXECUTION_COUNT,
    HEADER_PREVIOUS_RESPONSE,
    HEADER_QUEUE_NAME,
    HEADER_RETRY_COUNT,
    HEADER_RETRY_REASON,
    HEADER_TASK_NAME,
)
from contract.tracing import (
    CLOUD_TRACE_HEADER,
    TRACEPARENT_HEADER,
    SpanContext,
    parse_cloud_trace_context,
    parse_trace_headers,
)

logger = logging.getLogger("service.context")


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The caller's trace (`traceparent`, else `X-Cloud-Trace-Context`; contract.tracing):
    the producer's span, of which every attempt of the task is a child."""

    trace_id: str
    span_id: str | None
    """The caller's span id as 16 hex digits, Cloud Logging's `spanId` format."""
    sampled: bool

    def resource_name(self, project: str | None) -> str:
        """What Cloud Logging wants in `logging.googleapis.com/trace`.

        Without a project the bare trace id is returned: Cloud Logging still
        stores it, it just cannot link it to Cloud Trace.
        """
        if project:
            return f"projects/{project}/traces/{self.trace_id}"
        return self.trace_id

    def outgoing_headers(self) -> dict[str, str]:
        """`traceparent` and `X-Cloud-Trace-Context` for a call the handler makes: a new
        span of the same trace, so the backend's work joins the producer's trace too."""
        return SpanContext(self.trace_id, self.span_id, self.sampled).child().headers()


def _trace(found: SpanContext | None) -> TraceContext | None:
    if found is None:
        return None
    return TraceContext(trace_id=found.trace_id, span_id=found.span_id, sampled=found.sampled)


def parse_trace_context(value: str | None) -> TraceContext | None:
    """Parse `X-Cloud-Trace-Context`; None when absent or malformed."""
    return _trace(parse_cloud_trace_context(value))


def trace_from_headers(headers: Mapping[str, str]) -> TraceContext | None:
    """The caller's trace from lower-cased request headers: `traceparent` (W3C, what the
    enqueue helper and OpenTelemetry send) first, then `X-Cloud-Trace-Context`."""
    return _trace(
        parse_trace_headers(
            headers.get(TRACEPARENT_HEADER), headers.get(CLOUD_TRACE_HEADER.lower())
        )
    )


@dataclass(frozen=True, slots=True)
class TaskContext:
    """Everything about one delivery except the payload.

    Attributes:
        task_type: the `{type}` of `POST /tasks/{type}`.
        task_name: short task id (`X-CloudTasks-TaskName`), None outside Cloud Tasks.
        queue_name: short queue id (`X-CloudTasks-QueueName`).
        queue_key: the stack's key of that queue (`email`, `default`; `TASKS_QUEUES`),
            None when the queue is not one of the stack's or the request named none.
        retry_count: 0 on the first attempt (`X-CloudTasks-TaskRetryCount`).
        execution_count: responses received so far, 5xx excluded.
        eta: the task's schedule time (`X-CloudTasks-TaskETA`), UTC.
        previous_response: HTTP status of the previous attempt, if any.
        retry_reason: `X-CloudTasks-TaskRetryReason`, if any.
        trace: the caller's trace (`traceparent` or `X-Cloud-Trace-Context`), if any;
            `ctx.trace.outgoing_headers()` continues it in a call to a backend.
        invoker_email: the verified token's `email`; None when the check is off.
        http: a shared `httpx.AsyncClient` for calling backends (pooled
            connections; always pass a per-call `timeout`).
        headers: every request header, lower-cased names.
    """

    task_type: str
    task_name: str | None = None
    queue_name: str | None = None
    queue_key: str | None = None
    retry_count: int | None = None
    execution_count: int | None = None
    eta: datetime | None = None
    previous_response: int | None = None
    retry_reason: str | None = None
    trace: TraceContext | None = None
    invoker_email: str | None = None
    http: httpx.AsyncClient | None = field(default=None, repr=False, compare=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def idempotency_key(self) -> str | None:
        """`queue/task`, or None when the delivery carries no task name."""
        if not self.task_name:
            return None
        return f"{self.queue_name or ''}/{self.task_name}"

    def log_fields(self) -> dict[str, Any]:
        """The task fields every log line about this delivery carries."""
        fields: dict[str, Any] = {"task_type": self.task_type}
        if self.task_name is not None:
            fields["task_name"] = self.task_name
        if self.queue_name is not None:
            fields["queue_name"] = self.queue_name
        if self.queue_key is not None:
            fields["queue_key"] = self.queue_key
        if self.retry_count is not None:
            fields["retry_count"] = self.retry_count
        if self.execution_count is not None:
            fields["execution_count"] = self.execution_count
        if self.eta is not None:
            fields["eta"] = self.eta.isoformat()
        if self.previous_response is not None:
            fields["previous_response"] = self.previous_response
        if self.retry_reason is not None:
            fields["retry_reason"] = self.retry_reason
        return fields


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name.lower())
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        logger.warning("ignoring malformed header %s=%r: expected an integer", name, raw)
        return None


def _eta_header(headers: Mapping[str, str]) -> datetime | None:
    raw = headers.get(HEADER_ETA.lower())
    if not raw:
        return None
    try:
        # Seconds since the epoch, possibly fractional ("1700000000.123456").
        return datetime.fromtimestamp(float(raw), tz=UTC)
    except (ValueError, OverflowError, OSError):
        logger.warning("ignoring malformed header %s=%r: expected epoch seconds", HEADER_ETA, raw)
        return None


def context_from_headers(
    task_type: str,
    headers: Mapping[str, str],
    *,
    invoker_email: str | None = None,
    http: httpx.AsyncClient | None = None,
    queue_key_of: Callable[[str | None], str | None] | None = None,
) -> TaskContext:
    """Build the context of one delivery; `headers` keys must be lower-case.

    `queue_key_of` maps the queue id to the stack's queue key (`QueueRouting.key_of`).
    """
    queue_name = headers.get(HEADER_QUEUE_NAME.lower()) or None
    return TaskContext(
        task_type=task_type,
        task_name=headers.get(HEADER_TASK_NAME.lower()) or None,
        queue_name=queue_name,
        queue_key=queue_key_of(queue_name) if queue_key_of is not None else None,
        retry_count=_int_header(headers, HEADER_RETRY_COUNT),
        execution_count=_int_header(headers, HEADER_EXECUTION_COUNT),
        eta=_eta_header(headers),
        previous_response=_int_header(headers, HEADER_PREVIOUS_RESPONSE),
        retry_reason=headers.get(HEADER_RETRY_REASON.lower()) or None,
        trace=trace_from_headers(headers),
        invoker_email=invoker_email,
        http=http,
        headers=headers,
    )
