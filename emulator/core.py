"""The Cloud Tasks v2 API surface: queue and task RPCs over one state, one dispatcher.

Both front ends (gRPC and REST) call the same :class:`Emulator` methods with
the protobuf request messages of ``google-cloud-tasks`` and get protobuf
responses back, so the two APIs cannot drift apart. Every method runs on the
event loop thread; nothing here is thread-safe and nothing needs to be.

The core owns API behaviour only: look-ups (NOT_FOUND, ALREADY_EXISTS),
defaults of new tasks, views, and wiring. Request rules are emulator/validation.py,
state and persistence emulator/state.py (over emulator/store.py), page tokens
emulator/paging.py, dispatch emulator/dispatcher.py, time emulator/clock.py.

App Engine tasks are delivered to local hosts (emulator/appengine.py).
Deliberately not emulated: IAM (every caller may do everything), OAuth access
tokens, the 7-day block on re-creating a deleted queue,
BatchCreateTasks/BatchDeleteTasks and CMEK. Each answers with a clear error
rather than pretending.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shlex
import sqlite3
from typing import Any, Final

import grpc
from google.cloud import tasks_v2
from google.protobuf import field_mask_pb2

from contract.limits import (
    DEFAULT_DISPATCH_DEADLINE_S,
    DEFAULT_QUEUE_TOMBSTONE_S,
    DEFAULT_TOMBSTONE_S,
)
from emulator import appengine, paging, validation as v
from emulator.appengine import AppEngineHosts
from emulator.clock import Clock, ManualClock, RealClock
from emulator.delivery import Deliverer, HttpDeliverer
from emulator.dispatcher import Dispatcher
from emulator.errors import ApiError, already_exists, invalid, not_found
from emulator.oidc import OidcIssuer
from emulator.request import effective_url
from emulator.retry import RetryPolicy
from emulator.state import (
    ListQueuesResponsePb,
    ListTasksResponsePb,
    QueuePb,
    QueueState,
    Registry,
    TaskPb,
    TaskState,
    get_time,
    set_time,
    set_time_to_second,
    truncate_to_microsecond,
    truncate_to_millisecond,
)
from emulator.store import Store
from emulator.store_check import damaged

log = logging.getLogger("emulator")

LIST_QUEUES_MAX_PAGE: Final = 9800
LIST_TASKS_MAX_PAGE: Final = 1000
# Google documents 100 KB as the task size limit but accepts up to 1 MiB.
_LARGE_TASK_BYTES: Final = 100_000
_ALL_MUTABLE: Final = (
    "rate_limits",
    "retry_config",
    "stackdriver_logging_config",
    "http_target",
    "app_engine_routing_override",
)
_RUNNING: Final = tasks_v2.Queue.State.RUNNING
_PAUSED: Final = tasks_v2.Queue.State.PAUSED
_KEY: Final = "oidc_private_key"
MAX_ADVANCE_S: Final = 10 * 365 * 24 * 3600


def _issuer_for(store: Store | None) -> OidcIssuer:
    """The signing key of a persistent emulator is kept, so tokens stay verifiable
    across restarts; an unreadable stored key is refused with how to recover."""
    if store is None:
        return OidcIssuer()
    try:
        key = store.get_meta(_KEY)
        if key is not None:
            return OidcIssuer(key)
    except Exception as exc:  # ValueError, TypeError, UnsupportedAlgorithm from cryptography
        raise ValueError(
            f"the OIDC signing key stored in the data file {store.path} is unreadable "  # noqa: S608
            f"({type(exc).__name__}: {str(exc)[:200]}); to have a new key made, run "
            f'`sqlite3 {shlex.quote(str(store.path))} "DELETE FROM meta WHERE key = '
            f"'{_KEY}'\"` (tokens the old key signed stop verifying), then start again"
        ) from None
    issuer = OidcIssuer()
    store.put_meta(_KEY, issuer.private_key_pem)
    return issuer


def _check_stored_queue(pb: Any) -> None:
    """A queue read from the data file obeys the rules a new one does (CreateQueue)."""
    v.split_queue_name(pb.name)
    v.normalise_queue(pb)


class Emulator:
    """Queues, tasks and their dispatch, behind the Cloud Tasks v2 API surface."""

    def __init__(
        self,
        store: Store | None = None,
        tombstone_seconds: float = DEFAULT_TOMBSTONE_S,
        issuer: OidcIssuer | None = None,
        *,
        clock: Clock | None = None,
        deliverer: Deliverer | None = None,
        app_engine_hosts: AppEngineHosts | None = None,
        queue_tombstone_seconds: float = DEFAULT_QUEUE_TOMBSTONE_S,
    ) -> None:
        self.clock: Clock = clock or RealClock()
        self.issuer = issuer or _issuer_for(store)
        self.registry = Registry(store, tombstone_seconds, queue_tombstone_seconds)
        self.dispatcher = Dispatcher(
            self.registry,
            self.clock,
            deliverer or HttpDeliverer(),
            self.issuer,
            app_engine_hosts or AppEngineHosts(),
        )
        if isinstance(self.clock, ManualClock):
            self.clock.quiesce = self.dispatcher.quiesce

    @property
    def store(self) -> Store | None:
        return self.registry.store

    @property
    def queues(self) -> dict[str, QueueState]:
        return self.registry.queues

    @property
    def tombstones(self) -> dict[str, float]:
        return self.registry.tombstones

    @property
    def dispatched(self) -> int:
        return self.dispatcher.dispatched

    # -- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        try:
            loaded = self.registry.load(self.clock.now(), _check_stored_queue)
        except sqlite3.DatabaseError as exc:  # damage PRAGMA quick_check did not see
            assert self.store is not None
            raise damaged(self.store.path, str(exc)) from None
        self.dispatcher.push_loaded(loaded)
        await self.dispatcher.start()

    async def close(self) -> None:
        try:
            await self.dispatcher.close()
        finally:
            self.registry.close()

    def reset_tombstones(self) -> int:
        """Forget every reserved task name and deleted queue name (admin endpoint for tests)."""
        return self.registry.clear_tombstones()

    def health(self) -> dict[str, Any]:
        queues = self.queues.values()
        return {
            "status": "ok",
            "queues": len(self.queues),
            "tasks": sum(len(q.tasks) for q in queues),
            "in_flight": sum(q.in_flight for q in queues),
            "dispatched": self.dispatched,
            "tombstones": len(self.tombstones),
            "dropped": self.registry.drops.total(),
            "persistent": self.store is not None,
            "manual_clock": isinstance(self.clock, ManualClock),
        }

    def dropped(self, queue: str | None = None) -> dict[str, Any]:
        """Tasks whose retries ran out: counts per queue and the latest records
        (admin endpoint ``GET /emulator/v1/dropped``)."""
        if queue is not None:
            v.split_queue_name(queue)
        return self.registry.drops.report(queue)

    # -- the manual clock (admin endpoints) ---------------------------------------
    def clock_state(self) -> dict[str, Any]:
        return {"now": self.clock.now(), "manual": isinstance(self.clock, ManualClock)}

    async def advance_clock(self, seconds: float, wait_limit: float) -> dict[str, Any]:
        """Move a ``--manual-clock`` forward, running what falls due on the way."""
        if not isinstance(self.clock, ManualClock):
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "The emulator runs on the real clock: start it with --manual-clock to "
                "advance time through this call",
            )
        if seconds > MAX_ADVANCE_S:
            raise invalid(
                f"Cannot advance the clock by {seconds:g}s at once; at most {MAX_ADVANCE_S}s "
                "(10 years) per call"
            )
        await self.clock.advance(seconds, wait_limit=wait_limit)
        return self.clock_state()

    def run_due(self, queue: str) -> int:
        """Start an attempt for every task of ``queue`` that is due, as RunTask does
        (pause and rate limits bypassed); the number started."""
        return self.dispatcher.run_due(self._queue(queue))

    def reset_dropped(self) -> int:
        """Forget the dropped-task counts and records (admin endpoint for tests)."""
        return self.registry.drops.reset()

    # -- queues -----------------------------------------------------------------
    def _queue(self, name: str) -> QueueState:
        v.split_queue_name(name)
        q = self.queues.get(name)
        if q is None:
            if self.registry.reserved(name, self.clock.now()):
                raise not_found(
                    f"Queue {name} does not exist: it was deleted and its name is in the "
                    "tombstone window (CreateQueue appears to succeed meanwhile, as on Google, "
                    "where the window lasts up to 3 days); wait --queue-tombstone-seconds "
                    "or pick another name"
                )
            raise not_found(f"Queue {name} does not exist. Create it first with CreateQueue.")
        return q

    def create_queue(self, req: Any) -> Any:
        v.check_location(req.parent)
        pb = QueuePb()
        pb.CopyFrom(req.queue)
        if not pb.name:
            raise invalid("Queue.name is required: projects/P/locations/L/queues/QUEUE_ID")
        parent, _ = v.split_queue_name(pb.name)
        if parent != req.parent:
            raise invalid(f"Queue.name {pb.name} is not under the parent {req.parent}")
        if pb.name in self.queues:
            raise already_exists(f"Queue {pb.name} already exists")
        # Output-only fields are ignored, as Google does.
        pb.ClearField("state")
        pb.ClearField("purge_time")
        v.normalise_queue(pb)
        appengine.fill_queue_routing_host(pb)
        pb.state = _RUNNING
        if self.registry.reserved(pb.name, self.clock.now()):
            # Google's documented trap: CreateQueue on a name in the tombstone window may
            # answer as if it had created the queue; only GetQueue tells. Do the same.
            log.info("CreateQueue %s: the name is in the tombstone window, not created", pb.name)
            return pb
        q = QueueState(pb=pb, tokens=float(pb.rate_limits.max_burst_size))
        self.registry.put_queue(q)
        self.dispatcher.add_queue(q)
        return pb

    def get_queue(self, req: Any) -> Any:
        return self._queue(req.name).pb

    def list_queues(self, req: Any) -> Any:
        v.check_location(req.parent)
        size = paging.page_size(req.page_size, LIST_QUEUES_MAX_PAGE)
        state = v.parse_queue_filter(req.filter)
        prefix = req.parent + "/queues/"
        names, token = paging.page(
            (
                n
                for n, q in self.queues.items()
                if n.startswith(prefix) and (state is None or q.pb.state == state)
            ),
            req.page_token,
            prefix,
            size,
        )
        resp = ListQueuesResponsePb()
        for n in names:
            resp.queues.add().CopyFrom(self.queues[n].pb)
        resp.next_page_token = token
        return resp

    def update_queue(self, req: Any) -> Any:
        name = req.queue.name
        if not name:
            raise invalid("Queue.name is required in UpdateQueue")
        parent, _ = v.split_queue_name(name)
        paths = list(req.update_mask.paths) if req.HasField("update_mask") else []
        v.check_update_mask(paths)
        existing = self.queues.get(name)
        if existing is None:
            # UpdateQueue creates the queue when it does not exist (UpdateQueueRequest docs).
            create = tasks_v2.CreateQueueRequest.pb()(parent=parent, queue=req.queue)
            return self.create_queue(create)
        pb = QueuePb()
        pb.CopyFrom(existing.pb)
        if paths:
            field_mask_pb2.FieldMask(paths=paths).MergeMessage(
                req.queue, pb, replace_message_field=True, replace_repeated_field=True
            )
        else:
            for f in _ALL_MUTABLE:
                pb.ClearField(f)
                if req.queue.HasField(f):
                    getattr(pb, f).CopyFrom(getattr(req.queue, f))
        v.normalise_queue(pb)
        appengine.fill_queue_routing_host(pb)
        existing.pb = pb
        existing.tokens = min(existing.tokens, float(pb.rate_limits.max_burst_size))
        self.registry.put_queue(existing)
        existing.wake.set()
        return pb

    def delete_queue(self, req: Any) -> None:
        self.registry.delete_queue(self._queue(req.name), self.clock.now())

    def purge_queue(self, req: Any) -> Any:
        q = self._queue(req.name)
        now = self.clock.now()
        self.registry.remove_tasks(q, list(q.tasks.values()), now)
        set_time(q.pb.purge_time, now)
        self.registry.put_queue(q)
        return q.pb

    def _set_state(self, name: str, state: int) -> Any:
        q = self._queue(name)
        q.pb.state = state
        self.registry.put_queue(q)
        q.wake.set()
        return q.pb

    def pause_queue(self, req: Any) -> Any:
        return self._set_state(req.name, _PAUSED)

    def resume_queue(self, req: Any) -> Any:
        return self._set_state(req.name, _RUNNING)

    # -- tasks ------------------------------------------------------------------
    @staticmethod
    def _view(ts: TaskState, view: int) -> Any:
        checked = v.check_view(view)
        out = TaskPb()
        out.CopyFrom(ts.pb)
        out.view = checked
        if checked == tasks_v2.Task.View.BASIC:
            if out.HasField("app_engine_http_request"):
                out.app_engine_http_request.ClearField("body")
            else:
                out.http_request.ClearField("body")
        return out

    def _task(self, name: str) -> TaskState:
        queue_name, _ = v.split_task_name(name)
        q = self._queue(queue_name)
        ts = q.tasks.get(name)
        if ts is None:
            raise not_found(f"Task {name} does not exist (it may have completed or been deleted)")
        return ts

    def get_task(self, req: Any) -> Any:
        return self._view(self._task(req.name), req.response_view)

    def list_tasks(self, req: Any) -> Any:
        q = self._queue(req.parent)
        size = paging.page_size(req.page_size, LIST_TASKS_MAX_PAGE)
        names, token = paging.page(q.tasks, req.page_token, req.parent + "/tasks/", size)
        resp = ListTasksResponsePb()
        for n in names:
            resp.tasks.add().CopyFrom(self._view(q.tasks[n], req.response_view))
        resp.next_page_token = token
        return resp

    def _task_name(self, src: Any, q: QueueState, now: float) -> str:
        """The new task's name: the requested one if free, else a generated id."""
        if not src.name:
            return f"{q.name}/tasks/{secrets.randbits(63)}"
        v.check_new_task_name(src.name, q.name)
        if src.name in q.tasks:
            raise already_exists(f"Requested entity already exists: task {src.name}")
        if self.registry.reserved(src.name, now):
            raise already_exists(
                f"Requested entity already exists: the task name {src.name} was used "
                "recently (a task name stays reserved after the task ran or was deleted)"
            )
        return str(src.name)

    def create_task(self, req: Any) -> Any:
        """CreateTask, written to the data file before it returns."""
        ts, eta, view = self._new_task(req)
        self.registry.put_task(ts)
        self.dispatcher.push(ts, eta)
        return self._view(ts, view)

    async def create_task_grouped(self, req: Any) -> Any:
        """CreateTask whose row joins the store's group commit (the gRPC API): the
        answer comes once the row is committed, so an acknowledged task is never lost."""
        ts, eta, view = self._new_task(req)
        committed = self.registry.put_task_grouped(ts)
        if committed is None:
            self.dispatcher.push(ts, eta)
        else:
            committed.add_done_callback(lambda done: self._committed(ts, eta, done))
            # A caller that goes away meanwhile does not stop the commit or the dispatch.
            await asyncio.shield(committed)  # raises the commit's error
        return self._view(ts, view)

    def _committed(self, ts: TaskState, eta: float, done: asyncio.Future[None]) -> None:
        """Dispatch a task once its row is committed; a task whose write failed was never
        acknowledged, so it is taken back: never run, never listed."""
        if done.exception() is None:
            self.dispatcher.push(ts, eta)
        else:
            self.registry.forget_task(ts)

    def _new_task(self, req: Any) -> tuple[TaskState, float, int]:
        """The validated task of a CreateTaskRequest, its first eta and the response view."""
        q = self._queue(req.parent)
        view = v.check_view(req.response_view)
        src = req.task
        now = self.clock.now()
        pb = TaskPb()
        app_engine = src.HasField("app_engine_http_request")
        if app_engine:
            pb.app_engine_http_request.CopyFrom(src.app_engine_http_request)
            v.check_app_engine_request(pb.app_engine_http_request)
            appengine.fill_task_routing(pb.app_engine_http_request, q.pb)
        else:
            pb.http_request.CopyFrom(src.http_request)
            v.check_http_request(pb.http_request, q.pb)
            # The queue's uri_override applies at dispatch; refuse now what could never be sent.
            v.check_url(
                effective_url(pb.http_request, q.pb),
                "the task's URL after the queue's uri_override",
            )
        pb.name = self._task_name(src, q, now)
        if src.HasField("schedule_time"):
            v.check_schedule_time(src.schedule_time, now)
            pb.schedule_time.CopyFrom(src.schedule_time)
            truncate_to_microsecond(pb.schedule_time)
            eta = get_time(pb.schedule_time)
        else:
            set_time(pb.schedule_time, now)
            eta = now
        if src.HasField("dispatch_deadline"):
            v.check_dispatch_deadline(src.dispatch_deadline, app_engine=app_engine)
            pb.dispatch_deadline.CopyFrom(src.dispatch_deadline)
            truncate_to_millisecond(pb.dispatch_deadline)
        else:
            pb.dispatch_deadline.seconds = DEFAULT_DISPATCH_DEADLINE_S
        if src.HasField("retry_config"):
            pb.retry_config.CopyFrom(src.retry_config)
            v.check_task_retry_config(pb.retry_config)
            policy = RetryPolicy.for_task(q.pb.retry_config, pb)
            v.check_backoff_order(policy.min_backoff, policy.max_backoff, "Task.retry_config")
        set_time_to_second(pb.create_time, now)
        size = pb.ByteSize()
        v.check_task_size(size)
        if size > _LARGE_TASK_BYTES:
            log.warning("task %s is %d bytes; Google documents 100 KB as the limit", pb.name, size)
        return TaskState(pb=pb, queue=q, named=bool(src.name)), eta, view

    def delete_task(self, req: Any) -> None:
        ts = self._task(req.name)
        self.registry.remove_tasks(ts.queue, [ts], self.clock.now())

    def run_task(self, req: Any) -> Any:
        ts = self._task(req.name)
        self.dispatcher.run_now(ts)
        return self._view(ts, req.response_view)
