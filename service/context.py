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
import re
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
    HEADER_TRACE_CONTEXT,
)

logger = logging.getLogger("service.context")

# TRACE_ID/SPAN_ID;o=OPTIONS, TRACE_ID 32 hex digits, SPAN_ID decimal (Cloud Run docs).
_TRACE_CONTEXT = re.compile(r"^([0-9a-fA-F]{32})(?:/([0-9]+))?(?:;o=([0-9]+))?$")


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The parsed `X-Cloud-Trace-Context` header."""

    trace_id: str
    span_id: str | None
    sampled: bool

    def resource_name(self, project: str | None) -> str:
        """What Cloud Logging wants in `logging.googleapis.com/trace`.

        Without a project the bare trace id is returned: Cloud Logging still
        stores it, it just cannot link it to Cloud Trace.
        """
        if project:
            return f"projects/{project}/traces/{self.trace_id}"
        return self.trace_id


def parse_trace_context(value: str | None) -> TraceContext | None:
    """Parse `X-Cloud-Trace-Context`; None when absent or malformed."""
    if not value:
        return None
    match = _TRACE_CONTEXT.match(value.strip())
    if match is None:
        return None
    trace_id, span_id, options = match.groups()
    return TraceContext(trace_id=trace_id.lower(), span_id=span_id, sampled=options == "1")


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
        trace: parsed `X-Cloud-Trace-Context`, if any.
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
        trace=parse_trace_context(headers.get(HEADER_TRACE_CONTEXT.lower())),
        invoker_email=invoker_email,
        http=http,
        headers=headers,
    )
