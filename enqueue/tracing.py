"""The caller's trace, carried into every task it enqueues.

When the code that enqueues runs inside an OpenTelemetry span (a traced web request,
a job), every task gets `traceparent` and `X-Cloud-Trace-Context` naming that span
(`contract.tracing`): the worker logs each attempt under the same trace, with the
producer's span as the parent, so Cloud Logging and Cloud Trace show the request,
the queue and every retry together.

OpenTelemetry is optional: without its API installed, or outside a span, no header is
added. Headers the caller sets itself (`TaskSpec.headers`) are never replaced.
"""

from __future__ import annotations

import functools
from types import ModuleType

from contract.tracing import SpanContext


@functools.cache
def _otel_trace() -> ModuleType | None:
    """`opentelemetry.trace`, looked up once: a failed import is not cached by Python, and
    bulk enqueues ask for every task."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace


def current_span() -> SpanContext | None:
    """The active OpenTelemetry span's context, if the API is installed and one is active."""
    trace = _otel_trace()
    if trace is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return SpanContext(
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
        sampled=context.trace_flags.sampled,
    )


def trace_headers(own: dict[str, str]) -> dict[str, str]:
    """The headers to add to a task whose own headers are `own` (any case)."""
    names = {name.lower() for name in own}
    if names & {"traceparent", "x-cloud-trace-context"}:
        return {}  # the caller chose the trace: keep both formats consistent with it
    span = current_span()
    return span.headers() if span is not None else {}
