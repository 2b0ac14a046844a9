"""One task delivery, from a parsed request to an `Outcome`, without HTTP.

`TaskDelivery.deliver(TaskRequest(...))` takes what the HTTP adapter
(`service.app`) has already established — the task type from the path, the headers
(lower-case names), the body (None when it was above the Cloud Tasks size limit)
and the invoker from a verified token — and decides, in order: body size (413),
idempotency claim (an already finished task is acknowledged again, a running
duplicate gets 409), the queue it arrived on against its type's route
(`service.queues`; a misrouted task is a dead letter), task type lookup and
payload validation (both permanent: dead letter), the handler under its type's
timeout, and what its result or exception means (`service.outcomes`); a failure on the last
attempt Cloud Tasks will make (`service.final_attempt`) becomes a dead letter. Then it
writes the task's one log line (outcome, status, latency, reason) with the
delivery's fields (task name, queue name and key, trace) attached to every line
logged meanwhile, the handler's own included. `TaskDelivery.refuse` writes that
line for a request the token check turned away.

The idempotency key (queue/task name) is claimed before the handler runs,
completed when the outcome settles the task (done or dead letter), and released
otherwise, so Cloud Tasks' retry runs it; a plain handler's thread that outlives
its timeout keeps the claim until the thread ends, since it cannot be stopped.

It deliberately does not read HTTP (no Starlette here: the adapter reads the
body and checks the token), does not count in-flight requests or refuse work
while draining (`service.app` and `service.drain` do), and does not choose
status codes itself (`service.outcomes` does). The log line keeps the logger
name `service.app` it has always had, since log queries select on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import httpx
from pydantic import ValidationError

from contract.names import HEADER_QUEUE_OVERRIDE
from contract.routing import DEFAULT_QUEUE_KEY
from service import outcomes
from service.context import TaskContext, context_from_headers
from service.deadletter import DeadLetter, DeadLetterSink, log_dead_letter
from service.errors import PermanentError, TransientError
from service.final_attempt import FinalAttempts, Verdict
from service.idempotency import ClaimState, Completion, IdempotencyStore
from service.logs import SAMPLED_FIELD, SPAN_FIELD, TRACE_FIELD, delivery_fields
from service.outcomes import Outcome
from service.queues import QueueRouting

if TYPE_CHECKING:  # the OpenTelemetry SDK loads only when spans are exported
    from service.span_export import AttemptSpans
from service.task_registry import TaskRegistry, start_handler

logger = logging.getLogger("service.app")

# Longer than the longest dispatch deadline (30 min, Task.dispatch_deadline in
# https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues.tasks),
# so a live claim never lapses while its handler still runs; it only matters for
# stores that outlive a crash.
CLAIM_LEASE_S: Final = 1860.0
# Never forwarded to a dead-letter sink: the caller's credentials.
SECRET_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """A delivery as the HTTP adapter parsed it."""

    task_type: str
    headers: Mapping[str, str]
    """Header names in lower case."""
    body: bytes | None
    """The whole body; None when it was above `contract.limits.MAX_TASK_BYTES`."""
    invoker: str | None = None
    """The email of the verified token; None with the token check off."""
    received_at: float = field(default_factory=time.perf_counter)
    """`time.perf_counter()` when the request arrived: the log line's latency starts here."""


@dataclass(frozen=True, slots=True)
class _FinalAttempt:
    """Why a failing attempt became a dead letter, and the status it would have had."""

    verdict: Verdict
    status: int


class TaskDelivery:
    """Runs deliveries against one registry, idempotency store and dead-letter sink.

    `http` (handed to handlers as `ctx.http`) and `project` (for the trace field)
    exist only while the app runs; `service.app` sets them at startup.
    """

    def __init__(
        self,
        registry: TaskRegistry,
        store: IdempotencyStore,
        *,
        dead_letter_sink: DeadLetterSink | None = None,
        final_attempts: FinalAttempts | None = None,
        project: str | None = None,
        http: httpx.AsyncClient | None = None,
        routing: QueueRouting | None = None,
        spans: AttemptSpans | None = None,
    ) -> None:
        self.registry = registry
        # None: no export of the worker's own spans (`TASKS_TRACE_EXPORT` unset).
        self.spans = spans
        # None: a single-queue stack, every task may arrive on its one queue.
        self.routing = routing
        self.final_attempts = final_attempts
        self.store = store
        self.dead_letter_sink = dead_letter_sink
        self.project = project
        self.http = http
        # Tasks settling abandoned handler threads; referenced so they are not collected.
        self._background: set[asyncio.Task[None]] = set()

    async def deliver(self, request: TaskRequest) -> Outcome:
        """Decide the delivery's outcome, running its handler if it should run."""
        ctx = self._context(request)
        if self.spans is None:
            return await self._deliver(ctx, request, span_id=None)
        with self.spans.attempt(ctx) as span:
            outcome = await self._deliver(ctx, request, span_id=self.spans.span_id(span))
            self.spans.record(span, outcome.status, outcome.outcome)
            return outcome

    async def _deliver(
        self, ctx: TaskContext, request: TaskRequest, *, span_id: str | None
    ) -> Outcome:
        fields = self._log_fields(ctx, request.invoker)
        if span_id is not None:
            fields[SPAN_FIELD] = span_id  # this attempt's own span, exported
        with delivery_fields(fields):
            try:
                outcome = await self._decide(ctx, request.body)
            except asyncio.CancelledError:
                # Only the server cancels a task: the shutdown grace ran out.
                logger.error(
                    "task %s cancelled by shutdown; Cloud Tasks will retry it",
                    ctx.task_type,
                    extra={"fields": {"outcome": "cancelled", "status": None}},
                )
                raise
            _log_outcome(ctx, outcome, request.received_at)
        return outcome

    async def refuse(self, request: TaskRequest, outcome: Outcome) -> Outcome:
        """Log a delivery turned away before it reached a handler (the token check)."""
        ctx = self._context(request)
        with delivery_fields(self._log_fields(ctx, request.invoker)):
            _log_outcome(ctx, outcome, request.received_at)
        return outcome

    def _context(self, request: TaskRequest) -> TaskContext:
        return context_from_headers(
            request.task_type,
            request.headers,
            invoker_email=request.invoker,
            http=self.http,
            queue_key_of=self._queue_key_of,
        )

    def _queue_key_of(self, queue_id: str | None) -> str | None:
        if self.routing is not None:
            return self.routing.key_of(queue_id)
        # One queue: whatever queue named the delivery is the stack's default one.
        return DEFAULT_QUEUE_KEY if queue_id is not None else None

    def _log_fields(self, ctx: TaskContext, invoker: str | None) -> dict[str, Any]:
        fields: dict[str, Any] = ctx.log_fields()
        if ctx.trace is not None:
            # https://cloud.google.com/logging/docs/structured-logging#special-payload-fields
            fields[TRACE_FIELD] = ctx.trace.resource_name(self.project)
            if ctx.trace.span_id:
                fields[SPAN_FIELD] = ctx.trace.span_id
            fields[SAMPLED_FIELD] = ctx.trace.sampled
        if invoker is not None:
            fields["invoker_email"] = invoker
        return fields

    async def _decide(self, ctx: TaskContext, body: bytes | None) -> Outcome:
        if body is None:
            return outcomes.too_large()
        key = ctx.idempotency_key
        if key is not None:
            try:
                claim = await self.store.claim(key, lease_s=CLAIM_LEASE_S)
            except Exception as exc:
                # Without the claim the handler could run twice: let Cloud Tasks retry.
                return outcomes.dependency_failed("idempotency store failed to claim the task", exc)
            if claim.state is ClaimState.DONE:
                previous = claim.completion.outcome if claim.completion else "ok"
                return outcomes.duplicate(previous)
            if claim.state is ClaimState.IN_PROGRESS:
                return outcomes.in_progress()
        settled = False
        still_running: asyncio.Future[Any] | None = None
        try:
            outcome, still_running = await self._run(ctx, body)
            settled = outcome.settled
            if key is not None and settled:
                completion = Completion(outcome.status, outcome.outcome)
                await self._settle(self.store.complete(key, completion))
            return outcome
        finally:
            if key is not None and not settled:
                if still_running is not None:
                    # The thread runs on: keep the claim (retries get 409) until it ends.
                    self._settle_when_done(key, still_running)
                else:
                    # Transient failures, crashes and cancellation (shutdown grace
                    # exceeded) give the key back so Cloud Tasks' retry can run it.
                    await self._settle(self.store.release(key))

    async def _run(
        self, ctx: TaskContext, body: bytes
    ) -> tuple[Outcome, asyncio.Future[Any] | None]:
        """The outcome of running the handler, and its thread if that outlived the timeout."""
        if self.routing is not None:
            misrouted = self.routing.misroute(
                ctx.task_type,
                ctx.queue_name,
                ctx.headers.get(HEADER_QUEUE_OVERRIDE.lower()) or None,
            )
            if misrouted is not None:
                # Permanent: every retry arrives on the same wrong queue.
                return await self._dead_letter(ctx, body, misrouted), None
        task_type = self.registry.get(ctx.task_type)
        if task_type is None:
            reason = outcomes.unknown_type_reason(ctx.task_type, self.registry.names())
            return await self._dead_letter(ctx, body, reason), None
        try:
            payload = task_type.payload.model_validate_json(body or b"{}")
        except ValidationError as exc:
            return await self._dead_letter(ctx, body, f"invalid payload: {_summarise(exc)}"), None
        deadline = asyncio.timeout(task_type.timeout_s)
        running = start_handler(task_type, payload, ctx)
        thread = running if isinstance(running, asyncio.Future) else None
        try:
            async with deadline:
                # shield: a timeout stops the waiting; the thread cannot be stopped.
                result = await (asyncio.shield(thread) if thread is not None else running)
        except TimeoutError as exc:
            if deadline.expired():
                assert task_type.timeout_s is not None  # only a declared timeout expires
                alive = thread if thread is not None and not thread.done() else None
                failed = outcomes.timed_out(task_type.timeout_s)
                return await self._unless_final(ctx, body, failed, alive)
            # The handler's own TimeoutError (a library's): unforeseen, like any other.
            return await self._unless_final(ctx, body, outcomes.crashed(exc), None)
        except TransientError as exc:
            return await self._unless_final(ctx, body, outcomes.transient(exc), None)
        except PermanentError as exc:
            return await self._dead_letter(ctx, body, exc.message), None
        except Exception as exc:
            return await self._unless_final(ctx, body, outcomes.crashed(exc), None)
        return outcomes.done(result), None

    async def _unless_final(
        self,
        ctx: TaskContext,
        body: bytes,
        failed: Outcome,
        alive: asyncio.Future[Any] | None,
    ) -> tuple[Outcome, asyncio.Future[Any] | None]:
        """`failed` (Cloud Tasks retries it), or a dead letter when no retry will come."""
        if self.final_attempts is None:
            return failed, alive
        verdict = self.final_attempts.decide(ctx.headers, ctx.queue_key, time.time())
        if not verdict.final:
            return failed, alive
        # The failure keeps its own line (with the traceback of a crash); the task's
        # line then says dead_letter. A still-running thread is left to finish alone.
        logger.log(
            failed.severity,
            "task %s failed on its final attempt: %s",
            ctx.task_type,
            verdict.why,
            exc_info=failed.exc_info,
            extra={"fields": {"outcome": failed.outcome, "status": failed.status}},
        )
        error = failed.reason or (repr(failed.exc_info) if failed.exc_info else failed.outcome)
        final = _FinalAttempt(verdict, failed.status)
        outcome = await self._dead_letter(ctx, body, f"{verdict.why}: {error}", final)
        # Recorded: the task is settled. Not recorded (the sink failed): a thread still
        # running keeps its claim, as for any unsettled failure.
        return outcome, None if outcome.settled else alive

    async def _dead_letter(
        self, ctx: TaskContext, body: bytes, reason: str, final: _FinalAttempt | None = None
    ) -> Outcome:
        verdict = final.verdict if final is not None else None
        policy = verdict.policy if verdict is not None else None
        letter = DeadLetter(
            task_type=ctx.task_type,
            reason=reason,
            body=body,
            # Everything needed to replay the task, but never the caller's credentials.
            headers={k: v for k, v in ctx.headers.items() if k not in SECRET_HEADERS},
            task_name=ctx.task_name,
            queue_name=ctx.queue_name,
            kind="permanent" if final is None else "final_attempt",
            queue_key=ctx.queue_key,
            last_status=final.status if final is not None else None,
            retry_policy=policy.to_json() if policy is not None else None,
        )
        log_dead_letter(letter)
        if self.dead_letter_sink is not None:
            try:
                await self.dead_letter_sink.record(letter)
            except Exception as exc:
                return outcomes.dependency_failed(
                    "dead-letter sink failed; retrying so the letter is not lost", exc
                )
        return outcomes.dead_lettered(reason)

    def _settle_when_done(self, key: str, thread: asyncio.Future[Any]) -> None:
        async def settle() -> None:
            try:
                await thread
            except Exception:
                logger.warning("abandoned handler thread failed; the task's retry will run it")
                await self._settle(self.store.release(key))
                return
            logger.warning(
                "abandoned handler thread finished after its timeout; the task's retry "
                "will be acknowledged without running it again"
            )
            await self._settle(self.store.complete(key, Completion(200, outcomes.OK)))

        # Created inside the delivery's log context, so these lines carry its fields.
        background = asyncio.get_running_loop().create_task(settle())
        self._background.add(background)
        background.add_done_callback(self._background.discard)

    @staticmethod
    async def _settle(call: Awaitable[None]) -> None:
        # The task's fate is decided; a store failure now only widens the duplicate
        # window (a remembered key lapses with its lease), so log it and answer.
        try:
            await call
        except Exception:
            logger.exception("idempotency store failed to record the outcome")


def _log_outcome(ctx: TaskContext, outcome: Outcome, received_at: float) -> None:
    fields: dict[str, Any] = {
        "outcome": outcome.outcome,
        "status": outcome.status,
        "latency_ms": round((time.perf_counter() - received_at) * 1000, 3),
    }
    if outcome.reason is not None:
        fields["reason"] = outcome.reason
    logger.log(
        outcome.severity,
        "task %s %s: %d",
        ctx.task_type,
        outcome.outcome,
        outcome.status,
        exc_info=outcome.exc_info,
        extra={"fields": fields},
    )


def _summarise(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:10]:
        location = ".".join(str(p) for p in error["loc"]) or "(body)"
        parts.append(f"{location}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
