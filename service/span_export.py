"""Optional export of the worker's own spans to Cloud Trace, over OTLP/HTTP.

With `TASKS_TRACE_EXPORT` set to an OTLP base URL (the program sets
`https://telemetry.googleapis.com`, Cloud Trace's OTLP endpoint, when the stack's
`trace_export` is on), every attempt of a task becomes one span `task TYPE`: a child
of the producer's span (the task's `traceparent`, `contract.tracing`), so the trace
shows the request that enqueued the task and each of its attempts side by side, a
retry being one more child of the same parent. Attributes name the queue, the task
and the attempt; the span's status is the outcome's. The worker's log lines of that
attempt carry the span's id, so Cloud Logging shows them under it.

Spans are sent in batches by OpenTelemetry's SDK with the runtime account's own
credentials (Application Default Credentials); that account needs
`roles/cloudtrace.agent` (`telemetry.traces.write`), which bootstrap/ grants when
`trace_export` is on. A plain `http://127.0.0.1:PORT` URL (a local collector, the
tests) is used without credentials.

This module deliberately samples nothing out (the producer's sampling flag is
recorded as is) and never fails a task for the sake of its span: export errors are
the SDK's, logged and dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import requests
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from service.context import TaskContext

TRACES_PATH = "/v1/traces"
_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class TraceExportError(ValueError):
    """`TASKS_TRACE_EXPORT` is not an https URL (or a loopback http one)."""


def check_endpoint(url: str) -> str:
    """The base URL, checked: https anywhere, http only to this machine."""
    parts = urlsplit(url.strip())
    local = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not parts.hostname or (parts.scheme != "https" and not local) or parts.path not in ("", "/"):
        raise TraceExportError(
            f"{url!r} is not an OTLP base URL: give https://telemetry.googleapis.com (Cloud "
            "Trace) or http://127.0.0.1:PORT for a local collector, without a path"
        )
    return url.strip().rstrip("/")


def _session(base: str) -> requests.Session:
    if base.startswith("http://"):
        return requests.Session()
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, project = google.auth.default(scopes=_SCOPES)
    session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
    if project:
        # Cloud Trace's OTLP API bills and authorises against this project.
        session.headers["x-goog-user-project"] = project
    return session


class AttemptSpans:
    """One span per attempt, exported in batches to `base`/v1/traces."""

    def __init__(self, base: str, *, service_name: str = "task-worker") -> None:
        base = check_endpoint(base)
        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        exporter = OTLPSpanExporter(endpoint=base + TRACES_PATH, session=_session(base))
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("service.span_export")

    @contextmanager
    def attempt(self, ctx: TaskContext) -> Iterator[trace.Span]:
        """The span of this attempt, a child of the producer's span when there is one."""
        parent = None
        if ctx.trace is not None and ctx.trace.span_id:
            remote = SpanContext(
                trace_id=int(ctx.trace.trace_id, 16),
                span_id=int(ctx.trace.span_id, 16),
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED if ctx.trace.sampled else 0),
            )
            parent = trace.set_span_in_context(NonRecordingSpan(remote))
        attributes: dict[str, str | int] = {
            "cloud_tasks.task_type": ctx.task_type,
            "cloud_tasks.task_name": ctx.task_name or "",
            "cloud_tasks.queue_name": ctx.queue_name or "",
            "cloud_tasks.queue_key": ctx.queue_key or "",
            "cloud_tasks.retry_count": ctx.retry_count if ctx.retry_count is not None else -1,
        }
        with self.tracer.start_as_current_span(
            f"task {ctx.task_type}", context=parent, attributes=attributes
        ) as span:
            yield span

    @staticmethod
    def record(span: trace.Span, status: int, outcome: str) -> None:
        span.set_attribute("http.response.status_code", status)
        span.set_attribute("cloud_tasks.outcome", outcome)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR, outcome))

    @staticmethod
    def span_id(span: trace.Span) -> str:
        """The span's id as Cloud Logging's 16 hex digits."""
        return f"{span.get_span_context().span_id:016x}"

    def shutdown(self) -> None:
        """Send what is still batched (at worker shutdown)."""
        self.provider.shutdown()
