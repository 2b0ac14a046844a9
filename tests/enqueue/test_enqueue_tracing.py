"""A task carries the enqueuing code's OpenTelemetry span, and the worker continues it."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from contract.tracing import parse_cloud_trace_context, parse_traceparent
from enqueue.outputs import StackOutputs
from enqueue.spec import TaskSpec, build_task
from service.context import context_from_headers

OUTPUTS = StackOutputs(
    project="p",
    location="europe-west1",
    queue="projects/p/locations/europe-west1/queues/q",
    service_url="https://worker.example.com",
    audience="https://worker.example.com",
    invoker_email="tasks-invoker@p.iam.gserviceaccount.com",
)
tracer = TracerProvider().get_tracer("test")


def headers_of(spec: TaskSpec) -> dict[str, str]:
    return dict(build_task(spec, OUTPUTS, task_id="t1").task.http_request.headers)


def test_inside_a_span_the_task_names_it_in_both_formats() -> None:
    with tracer.start_as_current_span("handle-request") as span:
        headers = headers_of(TaskSpec(type="smoke"))
    context = span.get_span_context()
    parent = parse_traceparent(headers["traceparent"])
    assert parent is not None
    assert parent.trace_id == f"{context.trace_id:032x}"
    assert parent.span_id == f"{context.span_id:016x}"
    assert parse_cloud_trace_context(headers["X-Cloud-Trace-Context"]) == parent
    # The worker's view of the delivery: the producer's span is the attempt's parent.
    ctx = context_from_headers("smoke", {k.lower(): v for k, v in headers.items()})
    assert ctx.trace is not None
    assert (ctx.trace.trace_id, ctx.trace.span_id) == (parent.trace_id, parent.span_id)


def test_outside_a_span_nothing_is_added() -> None:
    headers = headers_of(TaskSpec(type="smoke"))
    assert "traceparent" not in headers
    assert "X-Cloud-Trace-Context" not in headers


def test_a_trace_the_caller_chose_is_kept_as_is() -> None:
    chosen = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    with tracer.start_as_current_span("other"):
        headers = headers_of(TaskSpec(type="smoke", headers=chosen))
    assert headers["traceparent"] == chosen["traceparent"]
    assert "X-Cloud-Trace-Context" not in headers
