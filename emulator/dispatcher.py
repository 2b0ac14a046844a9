"""The rate-limited dispatcher: per-queue loops that start attempts and carry out their outcome.

One loop per queue hands due tasks to attempts while holding the queue's
token bucket (max_dispatches_per_second refilling up to max_burst_size),
max_concurrent_dispatches and its state (a PAUSED queue starts nothing)
(RateLimits in queue.proto,
https://cloud.google.com/tasks/docs/reference/rpc/google.cloud.tasks.v2#ratelimits).
An attempt builds the request (emulator/request.py), hands it to the injected
:class:`~emulator.delivery.Deliverer` under the task's dispatch_deadline, and
applies the pure retry decision of emulator/retry.py: delete, reschedule, or
give up (the task is dropped: logged and counted by emulator/drops.py).
All time comes from the injected :class:`~emulator.clock.Clock`.

It deliberately validates nothing and answers no API call: emulator/core.py
does, and calls :meth:`Dispatcher.push`, :meth:`Dispatcher.add_queue` and
:meth:`Dispatcher.run_now`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math

import grpc

from emulator import retry
from emulator.appengine import AppEngineHosts
from emulator.clock import Clock
from emulator.delivery import Deliverer, DeliveryResult, OutboundRequest, Unreachable
from emulator.drops import DroppedTask
from emulator.errors import ApiError, http_to_rpc_code
from emulator.metrics import AttemptMetrics
from emulator.oidc import OidcIssuer
from emulator.request import build_request
from emulator.state import AttemptRecord, QueueState, Registry, TaskState, get_time, set_time
from emulator.validation import dispatch_deadline_s

log = logging.getLogger("emulator")

TOMBSTONE_SWEEP_S = 30.0
_YIELD_EVERY = 64  # attempts started in a row before the API gets a turn
_MAX_RECORD_RETRY_S = 60.0


class Dispatcher:
    """Schedules and performs attempts for every queue of a :class:`Registry`."""

    def __init__(
        self,
        registry: Registry,
        clock: Clock,
        deliverer: Deliverer,
        issuer: OidcIssuer,
        app_engine_hosts: AppEngineHosts,
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.deliverer = deliverer
        self.issuer = issuer
        self.app_engine_hosts = app_engine_hosts
        self.dispatched = 0  # attempts started, for /emulator/v1/health and benchmarks
        self.metrics = AttemptMetrics()  # per queue, for GET /metrics
        self._seq = itertools.count(1)
        self._attempts: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        await self.deliverer.start()
        for q in self.registry.queues.values():
            self.add_queue(q)
        self._sweeper = asyncio.create_task(self._sweep_tombstones())

    async def close(self) -> None:
        runners = [q.runner for q in self.registry.queues.values() if q.runner]
        tasks = [*runners, *self._attempts, self._sweeper]
        for task in tasks:
            if task:
                task.cancel()
        for task in tasks:
            if task:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self.deliverer.close()

    def add_queue(self, q: QueueState) -> None:
        """Start dispatching ``q`` (a new queue, or one loaded from the store)."""
        q.refilled_at = self.clock.monotonic()
        q.runner = asyncio.create_task(self._run_queue(q), name=f"queue {q.name}")

    async def _sweep_tombstones(self) -> None:
        """Free expired tombstones (``reserved`` checks expiry itself: this only frees
        memory). It wakes when the earliest one expires, at most every 30 s, so a
        ``--manual-clock`` advanced by a week steps through a few wake-ups, not 20,000."""
        while True:
            await self.clock.sleep(self._next_sweep_in())
            self.registry.expire_tombstones(self.clock.now())

    def _next_sweep_in(self) -> float:
        # A tombstone made from now on expires no sooner than tombstone_seconds from now.
        earliest = min(self.registry.tombstones.values(), default=math.inf)
        until = min(earliest - self.clock.now(), self.registry.tombstone_seconds)
        return max(TOMBSTONE_SWEEP_S, until)

    # -- scheduling -------------------------------------------------------------
    def push(self, ts: TaskState, eta: float | None = None) -> None:
        """Schedule ``ts`` at ``eta`` (default: its schedule_time)."""
        if eta is None:
            eta = get_time(ts.pb.schedule_time)
        ts.seq = next(self._seq)
        heapq.heappush(ts.queue.heap, (eta, ts.seq, ts))
        ts.queue.wake.set()

    def push_loaded(self, loaded: list[tuple[float, TaskState]]) -> None:
        """Schedule the tasks loaded at start-up, each at its eta: one heapify per
        queue, O(n), where a push each would be O(n log n)."""
        for eta, ts in loaded:
            ts.seq = seq = next(self._seq)
            ts.queue.heap.append((eta, seq, ts))
        for q in self.registry.queues.values():
            heapq.heapify(q.heap)
            q.wake.set()

    def run_now(self, ts: TaskState) -> None:
        """RunTask: an attempt now, bypassing pause, rate and concurrency, as Google does."""
        if not ts.in_flight:
            self._start_attempt(ts)

    def run_due(self, q: QueueState) -> int:
        """An attempt now for every task of ``q`` whose schedule_time has come, as
        RunTask would start it; the number started."""
        now = self.clock.now()
        due = [
            ts
            for ts in q.tasks.values()
            if not ts.in_flight and get_time(ts.pb.schedule_time) <= now
        ]
        for ts in due:
            self._start_attempt(ts)
        return len(due)

    async def quiesce(self, limit: float) -> None:
        """Wait (real time, at most ``limit`` s) until no attempt is in flight."""
        if self._attempts:
            await asyncio.wait(list(self._attempts), timeout=limit)

    async def _run_queue(self, q: QueueState) -> None:
        """Run :meth:`_dispatch_loop`, restarting it if a bug ever escapes it."""
        while not q.removed:
            try:
                await self._dispatch_loop(q)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch loop of %s failed; restarting it", q.name)
                await self.clock.sleep(0.1)

    def _refill(self, q: QueueState) -> None:
        """The token bucket: ``rate`` tokens a second, at most ``burst`` held."""
        mono = self.clock.monotonic()
        q.tokens = min(float(q.burst), q.tokens + (mono - q.refilled_at) * q.rate)
        q.refilled_at = mono

    async def _dispatch_loop(self, q: QueueState) -> None:
        """Hand due tasks to attempts, holding the rate, burst and concurrency limits."""
        started = 0
        while not q.removed:
            q.wake.clear()
            timeout: float | None = None
            if q.running and q.heap:
                eta, seq, ts = q.heap[0]
                if ts.removed or ts.in_flight or ts.seq != seq:
                    heapq.heappop(q.heap)
                    continue
                now = self.clock.now()
                self._refill(q)
                if eta > now:
                    timeout = eta - now
                elif q.in_flight >= q.concurrency:
                    timeout = None  # an attempt finishing sets wake
                elif q.tokens < 1.0:
                    timeout = (1.0 - q.tokens) / q.rate
                else:
                    q.tokens -= 1.0
                    heapq.heappop(q.heap)
                    self._start_attempt(ts)
                    started += 1
                    if started % _YIELD_EVERY == 0:
                        await asyncio.sleep(0)  # let the API and finished attempts run
                    continue
            await self.clock.wait(q.wake, timeout)

    # -- attempts ---------------------------------------------------------------
    def _start_attempt(self, ts: TaskState) -> None:
        q = ts.queue
        ts.in_flight = True
        q.in_flight += 1
        self.dispatched += 1
        now = self.clock.now()
        pb = ts.pb
        retry_count = pb.dispatch_count
        pb.dispatch_count += 1
        if not pb.HasField("first_attempt"):
            set_time(pb.first_attempt.dispatch_time, now)
            ts.first_attempt_at = now
        pb.last_attempt.Clear()
        pb.last_attempt.schedule_time.CopyFrom(pb.schedule_time)
        set_time(pb.last_attempt.dispatch_time, now)
        request: OutboundRequest | ApiError
        try:
            request = build_request(
                ts, retry_count, self.issuer, self.clock.token_time(), self.app_engine_hosts
            )
        except ApiError as exc:
            # A queue override, or an App Engine service no local host serves, makes
            # the task undeliverable: fail the attempt, and say why once per task.
            if retry_count == 0:
                log.warning("task %s cannot be delivered: %s", pb.name, exc.message)
            request = exc
        except Exception as exc:  # never let one task take the queue's runner down
            log.exception("cannot build the request for %s", pb.name)
            request = ApiError(grpc.StatusCode.INTERNAL, f"Emulator error: {exc}")
        task = asyncio.create_task(self._attempt(ts, request))
        self._attempts.add(task)
        task.add_done_callback(self._attempts.discard)

    async def _deliver(
        self, ts: TaskState, request: OutboundRequest
    ) -> tuple[DeliveryResult | None, grpc.StatusCode, str]:
        """Perform one delivery under the task's dispatch_deadline (task.proto)."""
        deadline = dispatch_deadline_s(ts.pb.dispatch_deadline)
        delivery = asyncio.ensure_future(self.deliverer.deliver(request))
        done = asyncio.Event()
        delivery.add_done_callback(lambda _: done.set())
        try:
            finished = await self.clock.wait(done, deadline)
        finally:
            if not delivery.done():
                delivery.cancel()
        if not finished:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await delivery
            message = f"The attempt exceeded the dispatch deadline of {deadline:g}s"
            return None, grpc.StatusCode.DEADLINE_EXCEEDED, message
        try:
            result = delivery.result()
        except Unreachable as exc:
            return None, grpc.StatusCode.UNAVAILABLE, str(exc)
        message = f"HTTP {result.status} {result.reason}".strip()
        return result, http_to_rpc_code(result.status), message

    async def _attempt(self, ts: TaskState, request: OutboundRequest | ApiError) -> None:
        q = ts.queue
        result: DeliveryResult | None = None
        try:
            if isinstance(request, ApiError):
                code, message = grpc.StatusCode.FAILED_PRECONDITION, request.message
            else:
                result, code, message = await self._deliver(ts, request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # each attempt is isolated: never let one stall a queue
            log.exception("attempt for %s failed unexpectedly", ts.pb.name)
            code = grpc.StatusCode.INTERNAL
            message = f"Emulator error while dispatching: {exc}"
        finally:
            ts.in_flight = False
            q.in_flight -= 1
            q.wake.set()
        self.metrics.attempt(ts, code)
        try:
            self._finish_attempt(ts, result, code, message)
            ts.record_failures = 0
        except Exception:
            # E.g. the data file became unwritable: keep the task and try again
            # later, 1 s, 2 s, 4 s ... at most a minute apart: never a hot loop.
            ts.record_failures += 1
            delay = min(_MAX_RECORD_RETRY_S, 2.0 ** min(ts.record_failures - 1, 16))
            log.exception(
                "recording the attempt of %s failed; retrying the task in %gs", ts.pb.name, delay
            )
            if not ts.removed:
                self.push(ts, self.clock.now() + delay)

    def _finish_attempt(
        self, ts: TaskState, result: DeliveryResult | None, code: grpc.StatusCode, message: str
    ) -> None:
        if ts.removed:
            return  # deleted or purged while in flight
        now = self.clock.now()
        pb = ts.pb
        q = ts.queue
        status = result.status if result is not None else None
        outcome = retry.decide(
            retry.RetryPolicy.for_task(q.pb.retry_config, pb),
            attempts=pb.dispatch_count,
            first_attempt_at=ts.first_attempt_at or now,
            now=now,
            status=status,
            retry_after=result.headers.get("Retry-After") if result is not None else None,
        )
        if isinstance(outcome, retry.Succeeded):
            self.registry.remove_tasks(q, [ts], now, fsync=False)
            return
        la = pb.last_attempt
        if status is not None:
            pb.response_count += 1
            set_time(la.response_time, now)
            if status < 500:
                ts.execution_count += 1
        la.response_status.code = code.value[0]
        la.response_status.message = message
        ts.previous_response = status
        if isinstance(outcome, retry.GiveUp):
            self.registry.remove_tasks(q, [ts], now, fsync=False)
            self.registry.drops.record(
                DroppedTask(
                    queue=q.name,
                    task=ts.name,
                    attempts=outcome.attempts,
                    last_status=status,
                    last_error=message,
                    first_attempt_at=ts.first_attempt_at,
                    dropped_at=now,
                )
            )
            return
        responded = now if status is not None else None
        ts.remember(AttemptRecord(get_time(la.dispatch_time), responded, status, code, message))
        set_time(pb.schedule_time, outcome.at)
        self.registry.put_task(ts, fsync=False)
        self.push(ts, outcome.at)
