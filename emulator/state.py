"""The emulator's in-memory state: queue and task records, tombstones, and their persistence.

:class:`Registry` holds every queue (:class:`QueueState`), its tasks
(:class:`TaskState`), the reserved names of finished or deleted named tasks
(tombstones) and the ledger of dropped tasks (emulator/drops.py), and writes
each change through to the optional SQLite :class:`~emulator.store.Store`
(which owns the file format). Times are passed
in by the caller, who got them from the injected clock.

It deliberately holds no rules (emulator/validation.py), no scheduling
(emulator/dispatcher.py) and no API behaviour (emulator/core.py).
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import grpc
from google.cloud import tasks_v2

from emulator.drops import DropLedger
from emulator.store import Store, StoredTask

# The raw protobuf classes behind the proto-plus types google-cloud-tasks ships.
QueuePb: Any = tasks_v2.Queue.pb()
TaskPb: Any = tasks_v2.Task.pb()
ListQueuesResponsePb: Any = tasks_v2.ListQueuesResponse.pb()
ListTasksResponsePb: Any = tasks_v2.ListTasksResponse.pb()


def set_time(ts: Any, seconds: float) -> None:
    """Set a google.protobuf.Timestamp from seconds since the epoch, to the microsecond.

    Google documents schedule, attempt and purge times "truncated to the nearest
    microsecond" (task.proto, queue.proto); a float clock near 1.8e9 s carries
    about 0.2 us of noise, so the value is rounded to the microsecond it stands for.
    """
    # Plain field writes: the Timestamp helpers (FromMicroseconds) cost ~1 us a call.
    seconds_part, micros = divmod(round(seconds * 1e6), 1_000_000)
    ts.seconds = seconds_part
    ts.nanos = micros * 1_000


def set_time_to_second(ts: Any, seconds: float) -> None:
    """Task.create_time: "truncated to the nearest second" (task.proto)."""
    ts.seconds = math.floor(seconds)
    ts.nanos = 0


def truncate_to_microsecond(ts: Any) -> None:
    """A caller's Timestamp (Task.schedule_time) to the microsecond, as Google keeps it."""
    ts.nanos -= ts.nanos % 1_000


def truncate_to_millisecond(d: Any) -> None:
    """Task.dispatch_deadline: "truncated to the nearest millisecond" (task.proto)."""
    d.nanos -= d.nanos % 1_000_000


def get_time(ts: Any) -> float:
    return float(ts.seconds + ts.nanos / 1e9)


def _decode(message_type: Any, data: bytes, name: str) -> Any:
    """A stored Queue or Task protobuf; ValueError unless it decodes and names ``name``."""
    pb = message_type.FromString(data)
    if pb.name != name:
        raise ValueError(f"the stored record names {str(pb.name)[:200]!r}")
    return pb


ATTEMPT_HISTORY: Final = 20
"""Finished attempts remembered per task, in memory, for the inspector (emulator/inspector.py)."""


class AttemptRecord(NamedTuple):
    """One finished attempt of a task that is still in its queue (it will be retried)."""

    dispatched_at: float  # seconds since the epoch
    responded_at: float | None  # None when the target never answered
    http_status: int | None  # the target's HTTP status, None when it never answered
    code: grpc.StatusCode  # the outcome (Attempt.response_status.code), OK never kept
    message: str  # e.g. "HTTP 503 Service Unavailable", "Could not reach ..."


def _stored(ts: TaskState) -> StoredTask:
    return StoredTask(
        ts.name,
        ts.queue.name,
        ts.pb.SerializeToString(),
        ts.named,
        ts.execution_count,
        ts.first_attempt_at,
        ts.previous_response,
    )


class TaskState:
    """A task: its protobuf (full view), queue, attempt counters and dispatch flags.

    A task loaded from the store keeps its stored bytes and decodes them on the
    first use of :attr:`pb`: a million pending tasks then hold about 200 bytes
    each instead of a decoded message (about 1.2 KB), and a restart decodes none
    of them twice.
    """

    __slots__ = (
        "_data",
        "_pb",
        "execution_count",
        "first_attempt_at",
        "history",
        "in_flight",
        "name",
        "named",
        "previous_response",
        "queue",
        "record_failures",
        "removed",
        "seq",
    )

    def __init__(
        self,
        pb: Any,
        queue: QueueState,
        named: bool,
        execution_count: int = 0,
        first_attempt_at: float | None = None,
        previous_response: int | None = None,
        *,
        name: str = "",
    ) -> None:
        """``pb`` is the tasks_v2.Task protobuf, or its stored bytes with its ``name``."""
        if isinstance(pb, bytes):
            self._pb: Any = None
            self._data = pb
            self.name = name
        else:
            self._pb = pb
            self._data = b""
            self.name = str(pb.name)
        self.queue = queue
        self.named = named
        self.execution_count = execution_count
        self.first_attempt_at = first_attempt_at
        self.previous_response = previous_response
        self.in_flight = False
        self.removed = False
        self.seq = 0
        self.record_failures = 0  # attempts in a row whose outcome could not be stored
        # The latest ATTEMPT_HISTORY failed attempts (a success deletes the task), made on
        # the first retry: a task that succeeds at once costs nothing. Not persisted.
        self.history: collections.deque[AttemptRecord] | None = None

    def remember(self, attempt: AttemptRecord) -> None:
        if self.history is None:
            self.history = collections.deque(maxlen=ATTEMPT_HISTORY)
        self.history.append(attempt)

    @property
    def pb(self) -> Any:
        if self._pb is None:
            self._pb = TaskPb.FromString(self._data)
            self._data = b""
        return self._pb


@dataclass(eq=False)
class QueueState:
    pb: Any  # tasks_v2.Queue protobuf
    tasks: dict[str, TaskState] = field(default_factory=dict)
    # Dispatcher bookkeeping: (eta, seq, task) heap, wake-up event, token bucket.
    heap: list[tuple[float, int, TaskState]] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0
    tokens: float = 0.0
    refilled_at: float = 0.0
    runner: asyncio.Task[None] | None = None
    removed: bool = False

    @property
    def name(self) -> str:
        return str(self.pb.name)

    def waiting(self) -> Iterator[tuple[float, TaskState]]:
        """Each task waiting for its attempt, with its eta, from the dispatch heap: the
        heap keeps stale entries (a task rescheduled, removed or in flight), skipped
        here, and a task's own protobuf is never decoded, so a large backlog stays cheap
        (tasks in flight, or whose group commit is pending, are not on it)."""
        for eta, seq, ts in self.heap:
            if ts.seq == seq and not (ts.removed or ts.in_flight):
                yield eta, ts

    @property
    def running(self) -> bool:
        return bool(self.pb.state == tasks_v2.Queue.State.RUNNING)

    @property
    def rate(self) -> float:
        return float(self.pb.rate_limits.max_dispatches_per_second)

    @property
    def burst(self) -> int:
        return int(self.pb.rate_limits.max_burst_size)

    @property
    def concurrency(self) -> int:
        return int(self.pb.rate_limits.max_concurrent_dispatches)


class Registry:
    """Every queue, task and tombstone, written through to the store when there is one."""

    def __init__(
        self, store: Store | None, tombstone_seconds: float, queue_tombstone_seconds: float = 0.0
    ) -> None:
        self.store = store
        self.tombstone_seconds = tombstone_seconds
        # Queue names share the tombstone map (and the store's table) with task names:
        # the two never collide, since a task's name is its queue's plus "/tasks/ID".
        self.queue_tombstone_seconds = queue_tombstone_seconds
        self.queues: dict[str, QueueState] = {}
        self.tombstones: dict[str, float] = {}
        self.drops = DropLedger(store)

    def load(self, now: float, check_queue: Callable[[Any], None]) -> list[tuple[float, TaskState]]:
        """Read the store into memory; returns the loaded tasks with their
        schedule times (to schedule).

        A row that does not decode, names another resource than its key, or a
        queue that ``check_queue`` refuses, is quarantined by the store (with a
        warning), never loaded half-way; the other rows load as usual.
        """
        if self.store is None:
            return []
        store = self.store
        self.drops.load()
        for rowid, name, data in store.load_queues(now):
            try:
                pb = _decode(QueuePb, data, name)
                check_queue(pb)
            except Exception as exc:  # DecodeError, ApiError, anything a bad row raises
                store.quarantine("queue", rowid, f"queue {name[:200]!r}: {exc}", now)
                continue
            self.queues[name] = QueueState(pb=pb, tokens=float(pb.rate_limits.max_burst_size))
        loaded = self._load_tasks(store, now)
        self.tombstones = {n: e for n, e in store.load_tombstones(now) if e > now}
        return loaded

    def _load_tasks(self, store: Store, now: float) -> list[tuple[float, TaskState]]:
        """Every readable task row, checked whole now but kept as bytes (see
        :class:`TaskState`); unreadable ones are quarantined once all are read."""
        check = TaskPb()  # one message reused: parsing into it allocates nothing
        loaded = []
        unreadable = []
        for rowid, name, queue, data, named, count, first, previous in store.load_tasks(now):
            q = self.queues.get(queue)
            try:
                if q is None:
                    raise ValueError(f"its queue {queue[:200]!r} is not in the file")
                check.ParseFromString(data)
                if check.name != name:
                    raise ValueError(f"the stored record names {str(check.name)[:200]!r}")
                eta = get_time(check.schedule_time)
            except Exception as exc:  # DecodeError, or anything else a bad row raises
                unreadable.append((rowid, f"task {name[:200]!r}: {exc}"))
                continue
            ts = TaskState(data, q, named != 0, count, first, previous, name=name)
            q.tasks[name] = ts
            loaded.append((eta, ts))
        for rowid, reason in unreadable:
            store.quarantine("task", rowid, reason, now)
        return loaded

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    # -- queues -----------------------------------------------------------------
    def put_queue(self, q: QueueState) -> None:
        if self.store is not None:
            self.store.put_queue(q.name, q.pb.SerializeToString())
        self.queues[q.name] = q

    def delete_queue(self, q: QueueState, now: float) -> None:
        """Delete a queue with its tasks; its name stays reserved for
        ``queue_tombstone_seconds`` (none when 0)."""
        until = now + self.queue_tombstone_seconds if self.queue_tombstone_seconds > 0 else None
        if self.store is not None:
            self.store.delete_queue(q.name, until)
        if until is not None:
            self.tombstones[q.name] = until
        del self.queues[q.name]
        q.removed = True
        for ts in q.tasks.values():
            ts.removed = True
        q.tasks.clear()
        q.wake.set()

    # -- tasks ------------------------------------------------------------------
    def put_task(self, ts: TaskState, *, fsync: bool = True) -> None:
        if self.store is not None:
            self.store.put_task(_stored(ts), fsync=fsync)
        ts.queue.tasks[ts.name] = ts

    def put_task_grouped(self, ts: TaskState) -> asyncio.Future[None] | None:
        """Add a new task now and write it in the store's next group commit; the
        caller answers once the returned future completes (None: no store)."""
        ts.queue.tasks[ts.name] = ts
        return None if self.store is None else self.store.put_task_grouped(_stored(ts))

    def forget_task(self, ts: TaskState) -> None:
        """Take back a task whose write failed: it was never acknowledged."""
        ts.removed = True
        if ts.queue.tasks.get(ts.name) is ts:
            del ts.queue.tasks[ts.name]

    def remove_tasks(
        self, q: QueueState, tasks: list[TaskState], now: float, *, fsync: bool = True
    ) -> None:
        """Delete tasks; a named one's name stays reserved for ``tombstone_seconds``."""
        tombstones = [(ts.name, now + self.tombstone_seconds) for ts in tasks if ts.named]
        if self.store is not None:
            self.store.delete_tasks([ts.name for ts in tasks], tombstones, fsync=fsync)
        for ts in tasks:
            ts.removed = True
            q.tasks.pop(ts.name, None)
        self.tombstones.update(tombstones)

    # -- tombstones -------------------------------------------------------------
    def reserved(self, name: str, now: float) -> bool:
        expires = self.tombstones.get(name)
        return expires is not None and expires > now

    def expire_tombstones(self, now: float) -> None:
        self.tombstones = {n: e for n, e in self.tombstones.items() if e > now}
        if self.store is not None:
            self.store.expire_tombstones(now)

    def clear_tombstones(self) -> int:
        count = len(self.tombstones)
        self.tombstones.clear()
        if self.store is not None:
            self.store.clear_tombstones()
        return count
