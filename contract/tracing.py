"""Trace context across the queue: one definition of the two header formats the
enqueue helper writes and the worker reads.

- W3C Trace Context `traceparent`: `00-TRACE_ID-SPAN_ID-FLAGS`, 32 and 16 lowercase
  hex digits, neither all zeros; flag bit 0 = sampled
  (https://www.w3.org/TR/trace-context/#traceparent-header).
- Google's `X-Cloud-Trace-Context`: `TRACE_ID/SPAN_ID;o=OPTIONS`, the span id in
  DECIMAL, `o=1` = sampled (https://cloud.google.com/trace/docs/trace-context).

Both name the same trace and the caller's span: a producer's span becomes the parent
of the task's attempts, so Cloud Logging and Cloud Trace join the worker's logs to
the request that enqueued the task, every retry included.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Final

from contract.names import HEADER_TRACE_CONTEXT, HEADER_TRACEPARENT

TRACEPARENT_HEADER: Final = HEADER_TRACEPARENT
CLOUD_TRACE_HEADER: Final = HEADER_TRACE_CONTEXT

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/([0-9]+))?(?:;o=([0-9]+))?$")
_ZERO_TRACE: Final = "0" * 32
_ZERO_SPAN: Final = "0" * 16
_MAX_SPAN: Final = 2**64 - 1


@dataclass(frozen=True, slots=True)
class SpanContext:
    """A trace id (32 hex), the span id of the caller (16 hex, or None) and sampling."""

    trace_id: str
    span_id: str | None
    sampled: bool

    def child(self) -> SpanContext:
        """A new span of the same trace, whose parent is this one."""
        return SpanContext(self.trace_id, new_span_id(), self.sampled)

    def traceparent(self) -> str:
        span = self.span_id or new_span_id()
        return f"00-{self.trace_id}-{span}-{'01' if self.sampled else '00'}"

    def cloud_trace_context(self) -> str:
        span = int(self.span_id or new_span_id(), 16)
        return f"{self.trace_id}/{span};o={1 if self.sampled else 0}"

    def headers(self) -> dict[str, str]:
        """Both headers, for a request that continues this span's trace."""
        return {
            TRACEPARENT_HEADER: self.traceparent(),
            CLOUD_TRACE_HEADER: self.cloud_trace_context(),
        }


def new_span_id() -> str:
    """A random, non-zero 64-bit span id as 16 hex digits."""
    while True:
        span = secrets.token_hex(8)
        if span != _ZERO_SPAN:
            return span


def parse_traceparent(value: str | None) -> SpanContext | None:
    """A W3C `traceparent` of version 00; None when absent or malformed."""
    match = _TRACEPARENT.match((value or "").strip())
    if match is None:
        return None
    trace_id, span_id, flags = match.groups()
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return SpanContext(trace_id, span_id, bool(int(flags, 16) & 1))


def parse_cloud_trace_context(value: str | None) -> SpanContext | None:
    """`X-Cloud-Trace-Context`; None when absent or malformed."""
    match = _CLOUD_TRACE.match((value or "").strip())
    if match is None:
        return None
    trace_id, span, options = match.groups()
    span_id = None
    if span is not None and 0 < int(span) <= _MAX_SPAN:
        span_id = f"{int(span):016x}"
    return SpanContext(trace_id.lower(), span_id, options == "1")


def parse_trace_headers(traceparent: str | None, cloud_trace: str | None) -> SpanContext | None:
    """The caller's span from a request's headers: `traceparent` first (the standard),
    then `X-Cloud-Trace-Context`."""
    return parse_traceparent(traceparent) or parse_cloud_trace_context(cloud_trace)
