"""What the inspector shows: queues, their tasks and one task, as plain JSON-ready dicts.

Read-only views over the emulator's state (emulator/state.py), the dispatcher's
attempt counters (emulator/metrics.py) and the dropped-task ledger
(emulator/drops.py), for the inspector's page (emulator/inspector.py). Times are
RFC 3339 strings in UTC, durations protobuf JSON (``"600s"``), codes by name.

A task body is decoded for reading: UTF-8 text, pretty-printed when it parses as
JSON, otherwise (not UTF-8, or control characters) base64 with a note saying
so. Everything here is data: the page renders it as text (bodies and headers
come from whoever created the task).

It deliberately changes nothing and knows no HTTP.
"""

from __future__ import annotations

import base64
import datetime
import heapq
import json
import re
from typing import TYPE_CHECKING, Any, Final

import grpc
from google.cloud import tasks_v2

from contract.durations import format_duration
from emulator import validation as v
from emulator.clock import ManualClock
from emulator.request import effective_url
from emulator.state import AttemptRecord, QueueState, TaskState, get_time

if TYPE_CHECKING:
    from emulator.core import Emulator

TASKS_SHOWN: Final = 500
"""At most this many tasks of a queue are listed (the earliest scheduled first)."""
BODY_SHOWN: Final = 256 * 1024
"""Characters of a decoded body sent to the page; the rest is cut with a note."""

# Control characters other than tab and line breaks: such a body is binary, not text.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CODE_NAMES: Final = {code.value[0]: code.name for code in grpc.StatusCode}


def _time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _pb_time(ts: Any) -> str | None:
    """A google.protobuf.Timestamp; None when unset (zero)."""
    return _time(get_time(ts)) if ts.seconds or ts.nanos else None


def _state_name(state: int) -> str:
    return str(tasks_v2.Queue.State(state).name)


def queue_view(emulator: Emulator, q: QueueState) -> dict[str, Any]:
    """One queue's row: where it is, its state, limits, depth and counts."""
    project, location, queue_id = q.name.split("/")[1::2]
    counters = emulator.dispatcher.metrics.queues.get(q)
    attempts = {code.name: n for code, n in counters.attempts.items()} if counters else {}
    rl, rc = q.pb.rate_limits, q.pb.retry_config
    return {
        "name": q.name,
        "project": project,
        "location": location,
        "id": queue_id,
        "state": _state_name(q.pb.state),
        "max_dispatches_per_second": rl.max_dispatches_per_second,
        "max_burst_size": rl.max_burst_size,
        "max_concurrent_dispatches": rl.max_concurrent_dispatches,
        "max_attempts": rc.max_attempts,
        "depth": len(q.tasks),
        "in_flight": q.in_flight,
        "dropped": emulator.registry.drops.counts.get(q.name, 0),
        "attempts": attempts,
        "failures": sum(n for code, n in attempts.items() if code != "OK"),
    }


def queues_view(emulator: Emulator) -> dict[str, Any]:
    """Every queue, and the emulator's own time: under ``--manual-clock`` it is not the
    browser's, and it decides which tasks are due."""
    return {
        "queues": [queue_view(emulator, q) for _, q in sorted(emulator.queues.items())],
        "clock": {
            "now": _time(emulator.clock.now()),
            "manual": isinstance(emulator.clock, ManualClock),
        },
    }


def _last_status(pb: Any) -> dict[str, Any] | None:
    la = pb.last_attempt
    if not la.HasField("response_status"):
        return None
    code = la.response_status.code
    return {
        "code": _CODE_NAMES.get(code, str(code)),
        "message": la.response_status.message,
    }


def _request_line(pb: Any) -> str:
    if pb.HasField("app_engine_http_request"):
        ae = pb.app_engine_http_request
        return f"{v.METHOD_NAMES.get(ae.http_method, 'POST')} App Engine {ae.relative_uri or '/'}"
    hr = pb.http_request
    return f"{v.METHOD_NAMES.get(hr.http_method, 'POST')} {hr.url}"


def task_row(ts: TaskState) -> dict[str, Any]:
    pb = ts.pb
    return {
        "name": ts.name,
        "id": ts.name.rsplit("/", 1)[1],
        "schedule_time": _pb_time(pb.schedule_time),
        "dispatch_count": pb.dispatch_count,
        "response_count": pb.response_count,
        "in_flight": ts.in_flight,
        "last_status": _last_status(pb),
        "request": _request_line(pb),
    }


def tasks_view(q: QueueState) -> dict[str, Any]:
    """The queue's earliest-scheduled :data:`TASKS_SHOWN` tasks, and how many there are.

    Etas come from the dispatch heap (:meth:`QueueState.waiting`), so only the tasks
    shown are decoded, not a whole backlog at every refresh of the page; the few in
    flight (or whose commit is pending) are read from their protobufs."""
    on_heap = {ts: eta for eta, ts in q.waiting()}
    timed = (
        (on_heap[ts] if ts in on_heap else get_time(ts.pb.schedule_time), ts.name, ts)
        for ts in q.tasks.values()
    )
    shown = [ts for *_, ts in heapq.nsmallest(TASKS_SHOWN, timed, key=lambda row: row[:2])]
    return {
        "queue": q.name,
        "state": _state_name(q.pb.state),
        "total": len(q.tasks),
        "tasks": [task_row(ts) for ts in shown],
    }


def decoded_body(body: bytes) -> dict[str, Any]:
    """``{"kind": "empty" | "json" | "text" | "base64", "text", "size", "note"}``."""
    note = ""
    if not body:
        kind, text = "empty", ""
    else:
        try:
            text = body.decode("utf-8")
            if _CONTROL.search(text):
                raise ValueError("control characters")
        except ValueError:  # UnicodeDecodeError included
            kind, text = "base64", base64.b64encode(body).decode("ascii")
            note = "not printable UTF-8 text: shown as base64"
        else:
            try:
                text, kind = json.dumps(json.loads(text), indent=2, ensure_ascii=False), "json"
            except ValueError:
                kind = "text"
    if len(text) > BODY_SHOWN:
        text = text[:BODY_SHOWN]
        note = f"{note + '; ' if note else ''}cut after {BODY_SHOWN} characters"
    return {"kind": kind, "text": text, "size": len(body), "note": note}


def _target(ts: TaskState) -> dict[str, Any]:
    pb = ts.pb
    if pb.HasField("app_engine_http_request"):
        ae = pb.app_engine_http_request
        routing = ae.app_engine_routing
        return {
            "kind": "app_engine",
            "method": v.METHOD_NAMES.get(ae.http_method, "POST"),
            "relative_uri": ae.relative_uri or "/",
            "routing": {
                "service": routing.service,
                "version": routing.version,
                "instance": routing.instance,
                "host": routing.host,
            },
            "headers": sorted(ae.headers.items()),
            "body": decoded_body(bytes(ae.body)),
        }
    hr = pb.http_request
    oidc = None
    if hr.HasField("oidc_token"):
        oidc = {
            "service_account_email": hr.oidc_token.service_account_email,
            "audience": hr.oidc_token.audience,
        }
    return {
        "kind": "http",
        "method": v.METHOD_NAMES.get(hr.http_method, "POST"),
        "url": hr.url,
        "effective_url": effective_url(hr, ts.queue.pb),
        "oidc_token": oidc,
        "headers": sorted(hr.headers.items()),
        "body": decoded_body(bytes(hr.body)),
    }


def _attempt(record: AttemptRecord) -> dict[str, Any]:
    return {
        "dispatch_time": _time(record.dispatched_at),
        "response_time": _time(record.responded_at),
        "http_status": record.http_status,
        "code": record.code.name,
        "message": record.message,
    }


def task_view(ts: TaskState) -> dict[str, Any]:
    """One task: target, headers, decoded body, schedule and attempts."""
    pb = ts.pb
    la = pb.last_attempt
    last = None
    if pb.HasField("last_attempt"):
        last = {
            "schedule_time": _pb_time(la.schedule_time),
            "dispatch_time": _pb_time(la.dispatch_time),
            "response_time": _pb_time(la.response_time),
            "status": _last_status(pb),
        }
    first = _pb_time(pb.first_attempt.dispatch_time) if pb.HasField("first_attempt") else None
    return {
        **task_row(ts),
        "queue": ts.queue.name,
        "create_time": _pb_time(pb.create_time),
        "dispatch_deadline": format_duration(v.duration_s(pb.dispatch_deadline)),
        "execution_count": ts.execution_count,
        "target": _target(ts),
        "first_attempt": {"dispatch_time": first} if first else None,
        "last_attempt": last,
        "history": [_attempt(r) for r in ts.history or ()],
    }
