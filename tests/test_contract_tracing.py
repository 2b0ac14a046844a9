"""The trace headers the enqueue helper writes and the worker reads (contract.tracing)."""

from __future__ import annotations

import pytest

from contract.tracing import (
    SpanContext,
    new_span_id,
    parse_cloud_trace_context,
    parse_trace_headers,
    parse_traceparent,
)
from service.context import context_from_headers

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_traceparent_round_trips_and_carries_sampling() -> None:
    parsed = parse_traceparent(f"00-{TRACE}-{SPAN}-01")
    assert parsed == SpanContext(TRACE, SPAN, True)
    assert parsed.traceparent() == f"00-{TRACE}-{SPAN}-01"
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-00") == SpanContext(TRACE, SPAN, False)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        f"01-{TRACE}-{SPAN}-01",  # only version 00 is defined
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero ids are invalid
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE.upper()}-{SPAN}-01",  # lowercase hex only
        f"00-{TRACE}-{SPAN}",
    ],
)
def test_invalid_traceparent_is_ignored(value: str | None) -> None:
    assert parse_traceparent(value) is None


def test_the_two_formats_name_the_same_span() -> None:
    span = SpanContext(TRACE, SPAN, True)
    cloud = span.cloud_trace_context()
    assert cloud == f"{TRACE}/{int(SPAN, 16)};o=1"
    assert parse_cloud_trace_context(cloud) == span
    # traceparent wins when both are present (it is what OpenTelemetry propagates).
    other = SpanContext(TRACE, "1111111111111111", True)
    assert parse_trace_headers(other.traceparent(), cloud) == other
    assert parse_trace_headers(None, cloud) == span


def test_a_child_is_a_new_span_of_the_same_trace() -> None:
    parent = SpanContext(TRACE, SPAN, True)
    child = parent.child()
    assert (child.trace_id, child.sampled) == (TRACE, True)
    assert child.span_id != SPAN
    assert len(new_span_id()) == 16


def test_the_worker_continues_the_producers_trace() -> None:
    ctx = context_from_headers("record", {"traceparent": f"00-{TRACE}-{SPAN}-01"})
    assert ctx.trace is not None
    assert (ctx.trace.trace_id, ctx.trace.span_id, ctx.trace.sampled) == (TRACE, SPAN, True)
    outgoing = ctx.trace.outgoing_headers()
    onward = parse_traceparent(outgoing["traceparent"])
    assert onward is not None
    assert onward.trace_id == TRACE
    assert onward.span_id != SPAN  # a span of its own, child of the producer's
    assert parse_cloud_trace_context(outgoing["X-Cloud-Trace-Context"]) == onward
