"""`TaskDelivery` driven directly: parsed request in, `Outcome` out, no HTTP at all.

Each delivery decision (done, duplicate, in progress, dead letter, retry,
timeout, crash, store and sink failures, too large, refused) against a small
registry of its own, plus the shape of every `service.outcomes` constructor.
What only HTTP has (routes, the token check, reading the body, rendering) is
tested through the app in test_service_tasks.py and test_service_auth.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from contract.limits import MAX_TASK_BYTES
from service import (
    Claim,
    ClaimState,
    Completion,
    DeadLetter,
    InMemoryIdempotencyStore,
    PermanentError,
    TaskContext,
    TaskRegistry,
    TransientError,
    outcomes,
)
from service.delivery import TaskDelivery, TaskRequest
from service.outcomes import Outcome
from tests.service.asgi import LogCapture, capture_logs

HEADERS = {"x-cloudtasks-taskname": "t1", "x-cloudtasks-queuename": "jobs"}


class Payload(BaseModel):
    n: int = 0


class Recorder:
    """A registry of small task types that record their runs, and a sink that keeps letters."""

    def __init__(self) -> None:
        self.registry = TaskRegistry()
        self.runs: list[tuple[str, int]] = []
        self.letters: list[DeadLetter] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()

        @self.registry.task("ok", payload=Payload)
        async def ok(payload: Payload, ctx: TaskContext) -> dict[str, int]:
            self.runs.append(("ok", payload.n))
            return {"n": payload.n}

        @self.registry.task("permanent", payload=Payload)
        async def permanent(payload: Payload, ctx: TaskContext) -> None:
            self.runs.append(("permanent", payload.n))
            raise PermanentError("record gone")

        @self.registry.task("transient", payload=Payload)
        async def transient(payload: Payload, ctx: TaskContext) -> None:
            self.runs.append(("transient", payload.n))
            raise TransientError("backend down", retry_after=2.5, status=429)

        @self.registry.task("crash", payload=Payload)
        async def crash(payload: Payload, ctx: TaskContext) -> None:
            raise RuntimeError("boom")

        @self.registry.task("wait", payload=Payload)
        async def wait(payload: Payload, ctx: TaskContext) -> None:
            self.runs.append(("wait", payload.n))
            self.started.set()
            await self.release.wait()

        @self.registry.task("slow", payload=Payload, timeout_s=0.05)
        async def slow(payload: Payload, ctx: TaskContext) -> None:
            await asyncio.Event().wait()  # never set: only the timeout ends it

    async def record(self, letter: DeadLetter) -> None:
        self.letters.append(letter)


class BrokenStore:
    async def claim(self, key: str, *, lease_s: float) -> Claim:
        raise ConnectionError("store down")

    async def complete(self, key: str, completion: Completion) -> None:
        raise ConnectionError("store down")

    async def release(self, key: str) -> None:
        raise ConnectionError("store down")


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    with capture_logs() as capture:
        yield capture


def _request(task_type: str, body: bytes | None = b"{}", **headers: str) -> TaskRequest:
    return TaskRequest(task_type, {**HEADERS, **headers}, body, invoker="a@p.example.com")


def _delivery(recorder: Recorder, store: Any = None) -> TaskDelivery:
    return TaskDelivery(
        recorder.registry,
        store or InMemoryIdempotencyStore(),
        dead_letter_sink=recorder,
        project="p1",
    )


def test_done_then_duplicate_runs_once_and_logs_the_task_line(logs: LogCapture) -> None:
    recorder = Recorder()
    delivery = _delivery(recorder)

    async def scenario() -> tuple[Outcome, Outcome]:
        trace = {"x-cloud-trace-context": "0123456789abcdef0123456789abcdef/7;o=1"}
        first = await delivery.deliver(_request("ok", b'{"n": 3}', **trace))
        return first, await delivery.deliver(_request("ok", b'{"n": 3}'))

    first, again = asyncio.run(scenario())
    assert (first.status, first.body) == (200, {"status": "ok", "result": {"n": 3}})
    assert (again.status, again.body) == (
        200,
        {"status": "duplicate", "previous_outcome": "ok"},
    )
    assert recorder.runs == [("ok", 3)]
    [line] = logs.entries(lambda e: e.get("outcome") == "ok")
    assert line["message"] == "task ok ok: 200"
    assert line["logger"] == "service.app"  # the name log queries select on
    assert line["task_name"] == "t1"
    assert line["invoker_email"] == "a@p.example.com"
    assert line["logging.googleapis.com/trace"] == (
        "projects/p1/traces/0123456789abcdef0123456789abcdef"
    )
    assert line["latency_ms"] >= 0


def test_a_running_duplicate_gets_409_and_the_first_still_settles() -> None:
    recorder = Recorder()
    delivery = _delivery(recorder)

    async def scenario() -> tuple[Outcome, Outcome, Outcome]:
        first = asyncio.create_task(delivery.deliver(_request("wait")))
        await recorder.started.wait()
        duplicate = await delivery.deliver(_request("wait"))
        recorder.release.set()
        return await first, duplicate, await delivery.deliver(_request("wait"))

    first, duplicate, later = asyncio.run(scenario())
    assert (duplicate.status, duplicate.headers) == (409, {"Retry-After": "10"})
    assert first.status == 200
    assert later.outcome == "duplicate"
    assert recorder.runs == [("wait", 0)]


def test_permanent_error_is_dead_lettered_once_without_credentials() -> None:
    recorder = Recorder()
    delivery = _delivery(recorder)
    request = _request("permanent", authorization="Bearer secret", cookie="c=1")

    async def scenario() -> list[Outcome]:
        return [await delivery.deliver(request) for _ in range(2)]

    first, again = asyncio.run(scenario())
    assert first.body == {"status": "dead_letter", "reason": "record gone"}
    assert again.outcome == "duplicate"
    [letter] = recorder.letters
    assert (letter.task_type, letter.task_name, letter.queue_name) == ("permanent", "t1", "jobs")
    assert "authorization" not in letter.headers
    assert "cookie" not in letter.headers


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"[1]", "invalid payload: (body): Input should be an object"), (b"{", "Invalid JSON")],
)
def test_invalid_payload_is_a_dead_letter_and_never_runs(body: bytes, reason: str) -> None:
    recorder = Recorder()
    outcome = asyncio.run(_delivery(recorder).deliver(_request("ok", body)))
    assert outcome.outcome == "dead_letter"
    assert outcome.reason is None
    assert outcome.body is not None
    assert reason in outcome.body["reason"]
    assert recorder.runs == []
    assert recorder.letters[0].body == body


def test_unknown_type_is_a_dead_letter_naming_the_known_ones() -> None:
    recorder = Recorder()
    outcome = asyncio.run(_delivery(recorder).deliver(_request("nope")))
    assert outcome.body is not None
    assert outcome.body["reason"] == outcomes.unknown_type_reason("nope", recorder.registry.names())
    assert "'nope'; this worker handles crash, ok" in outcome.body["reason"]


def test_transient_error_releases_the_key_so_the_retry_runs() -> None:
    recorder = Recorder()
    delivery = _delivery(recorder)

    async def scenario() -> list[Outcome]:
        return [await delivery.deliver(_request("transient")) for _ in range(2)]

    for outcome in asyncio.run(scenario()):
        assert (outcome.status, outcome.headers) == (429, {"Retry-After": "3"})
        assert outcome.reason == "backend down"
    assert len(recorder.runs) == 2


def test_timeout_and_crash_are_retried(logs: LogCapture) -> None:
    recorder = Recorder()
    delivery = _delivery(recorder)
    timed_out = asyncio.run(delivery.deliver(_request("slow")))
    assert (timed_out.status, timed_out.reason) == (503, "handler exceeded its timeout of 0.05 s")
    crashed = asyncio.run(delivery.deliver(_request("crash")))
    assert (crashed.status, crashed.body) == (500, {"status": "error"})
    [line] = logs.entries(lambda e: e.get("outcome") == "error")
    assert "RuntimeError: boom" in line["stack_trace"]


def test_a_failing_store_means_retry_and_no_run() -> None:
    recorder = Recorder()
    outcome = asyncio.run(_delivery(recorder, BrokenStore()).deliver(_request("ok")))
    assert (outcome.status, outcome.headers) == (503, {"Retry-After": "10"})
    assert outcome.reason == "idempotency store failed to claim the task"
    assert recorder.runs == []


def test_too_large_is_answered_before_the_claim() -> None:
    recorder = Recorder()
    store = InMemoryIdempotencyStore()
    outcome = asyncio.run(_delivery(recorder, store).deliver(_request("ok", None)))
    assert (outcome.status, outcome.body) == (
        413,
        {"status": "too_large", "limit_bytes": MAX_TASK_BYTES},
    )
    claim = asyncio.run(store.claim("jobs/t1", lease_s=60))
    assert claim.state is ClaimState.CLAIMED  # nothing had claimed it


def test_a_refused_delivery_is_logged_and_nothing_runs(logs: LogCapture) -> None:
    recorder = Recorder()
    refusal = outcomes.forbidden("x@y.z is not an allowed invoker")
    request = TaskRequest("ok", HEADERS, b"{}")
    assert asyncio.run(_delivery(recorder).refuse(request, refusal)) is refusal
    assert recorder.runs == []
    [line] = logs.entries(lambda e: e.get("outcome") == "forbidden")
    assert line["severity"] == "WARNING"
    assert line["reason"] == "x@y.z is not an allowed invoker"
    assert line["task_name"] == "t1"


@pytest.mark.parametrize(
    ("outcome", "status", "body_status", "severity", "headers"),
    [
        (outcomes.done(None), 200, "ok", logging.INFO, {}),
        (outcomes.duplicate("ok"), 200, "duplicate", logging.INFO, {}),
        (outcomes.dead_lettered("r"), 200, "dead_letter", logging.WARNING, {}),
        (outcomes.timed_out(1), 503, "retry", logging.WARNING, {}),
        (outcomes.crashed(RuntimeError()), 500, "error", logging.ERROR, {}),
        (
            outcomes.dependency_failed("r", RuntimeError()),
            503,
            "retry",
            logging.ERROR,
            {"Retry-After": "10"},
        ),
        (outcomes.in_progress(), 409, "in_progress", logging.WARNING, {"Retry-After": "10"}),
        (outcomes.too_large(), 413, "too_large", logging.WARNING, {}),
        (
            outcomes.unauthenticated("r"),
            401,
            "unauthenticated",
            logging.WARNING,
            {"WWW-Authenticate": "Bearer"},
        ),
        (outcomes.forbidden("r"), 403, "forbidden", logging.WARNING, {}),
        (
            outcomes.certs_unavailable("r"),
            503,
            "retry",
            logging.ERROR,
            {"Retry-After": "10"},
        ),
        (
            outcomes.draining(),
            503,
            "draining",
            logging.INFO,
            {"Retry-After": "1", "Connection": "close"},
        ),
        (outcomes.health(is_draining=False), 200, "ok", logging.INFO, {}),
        (outcomes.health(is_draining=True), 503, "draining", logging.INFO, {}),
        (
            outcomes.no_route(405, {"Allow": "POST"}),
            405,
            "no_route",
            logging.WARNING,
            {"Allow": "POST"},
        ),
    ],
)
def test_each_outcome_has_one_shape(
    outcome: Outcome, status: int, body_status: str, severity: int, headers: dict[str, str]
) -> None:
    assert outcome.status == status
    assert outcome.body is not None
    assert outcome.body["status"] == body_status
    assert outcome.severity == severity
    assert dict(outcome.headers) == headers
    assert outcome.settled == (outcome.outcome in ("ok", "dead_letter"))


def test_an_odd_result_is_rendered_as_text_and_still_done() -> None:
    class Odd:
        def __repr__(self) -> str:
            return "<odd>"

    outcome = outcomes.done({"x": Odd()})
    assert outcome.status == 200
    assert outcome.body is not None
    assert outcome.body["result"] == {"x": "<odd>"}
