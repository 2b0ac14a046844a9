"""The Cloud Tasks ``v2beta3`` API, served by the v2 core through message translation.

:class:`V2beta3Api` has the :class:`~emulator.core.Emulator` methods' names; each
takes a ``google.cloud.tasks.v2beta3`` request protobuf, turns it into the v2
request, calls the core and turns the v2 answer back. So both versions see the
same queues and tasks (a task created through v2 is listed through v2beta3),
and every rule lives once, in the core.

The two versions share their nested messages field for field (HttpRequest,
RateLimits, RetryConfig, ... differ only in their package); what differs is
handled here:

* ``Queue.app_engine_http_queue.app_engine_routing_override`` is v2's
  ``Queue.app_engine_routing_override`` (also in update masks);
* ``Queue.type``: PUSH (or unset) is what the emulator serves; PULL answers
  UNIMPLEMENTED (pull queues are not emulated), and the type cannot be updated;
* ``Queue.task_ttl`` and ``Queue.tombstone_ttl`` are reported as honoured:
  Google's default task_ttl (31 days; the emulator never expires a task before)
  and the emulator's ``--tombstone-seconds``; another value answers UNIMPLEMENTED
  naming the flag, since the core keeps one tombstone window for every queue;
* ``Queue.stats`` is output only and, as on Google, returned only when a
  GetQueue/ListQueues ``read_mask`` names it (``executed_last_minute_count`` is
  not tracked and stays 0); a ``read_mask`` returns just the fields it names;
* ``Task.pull_message`` answers INVALID_ARGUMENT, as Google does for a pull
  task sent to a push queue.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from google.cloud import tasks_v2, tasks_v2beta3
from google.protobuf import field_mask_pb2
from google.protobuf.descriptor import Descriptor

from emulator.core import Emulator
from emulator.errors import invalid, unimplemented
from emulator.state import QueueState, get_time, set_time

b3 = tasks_v2beta3
SERVICE: Final = "google.cloud.tasks.v2beta3.CloudTasks"
TASK_TTL_S: Final = 31 * 24 * 3600  # Google's default Queue.task_ttl
_QUEUE: Final = b3.Queue.pb().DESCRIPTOR.full_name
_TASK: Final = b3.Task.pb().DESCRIPTOR.full_name
_PUSH: Final = b3.Queue.Type.PUSH
_PULL: Final = b3.Queue.Type.PULL
_ROUTING: Final = "app_engine_routing_override"
_AE_QUEUE: Final = "app_engine_http_queue"
# Fields only one version has: translated or checked by hand, never copied.
_BY_HAND: Final = frozenset(
    {
        f"{tasks_v2.Queue.pb().DESCRIPTOR.full_name}.{_ROUTING}",
        f"{_QUEUE}.{_AE_QUEUE}",
        f"{_QUEUE}.type_",
        f"{_QUEUE}.task_ttl",
        f"{_QUEUE}.tombstone_ttl",
        f"{_QUEUE}.stats",
        f"{_TASK}.pull_message",
        f"{b3.GetQueueRequest.pb().DESCRIPTOR.full_name}.read_mask",
        f"{b3.ListQueuesRequest.pb().DESCRIPTOR.full_name}.read_mask",
    }
)


def _copy(src: Any, dst: Any) -> None:
    """Copy every set field of ``src`` into ``dst`` by name, through nested messages
    of either version; fields in :data:`_BY_HAND` are left to the caller."""
    fields = dst.DESCRIPTOR.fields_by_name
    for fd, value in src.ListFields():
        if fd.full_name in _BY_HAND:
            continue
        name = fd.name
        target = getattr(dst, name)
        if fd.message_type is None:
            if fd.is_repeated:
                target.extend(value)
            else:
                setattr(dst, name, value)
        elif fd.message_type.GetOptions().map_entry:
            target.update(value)  # map<string, string> (headers)
        elif fd.is_repeated:
            for item in value:
                _copy(item, target.add())
        elif fd.message_type.full_name == fields[name].message_type.full_name:
            target.CopyFrom(value)  # a shared well-known type (Timestamp, Duration, ...)
        else:
            _copy(value, target)


def _to(message_type: Any, src: Any) -> Any:
    out = message_type.pb()()
    _copy(src, out)
    return out


def _duration_s(d: Any) -> float:
    return float(d.seconds + d.nanos / 1e9)


class V2beta3Api:
    """The v2beta3 methods over one :class:`Emulator` (see the module docstring)."""

    def __init__(self, emulator: Emulator) -> None:
        self.core = emulator

    @property
    def tombstone_s(self) -> float:
        return float(self.core.registry.tombstone_seconds)

    # -- queues: v2beta3 -> v2 ------------------------------------------------------
    def _check_ttls(self, queue: Any) -> None:
        for field, honoured, how in (
            ("task_ttl", float(TASK_TTL_S), "the emulator keeps tasks until they run"),
            (
                "tombstone_ttl",
                self.tombstone_s,
                "start the emulator with --tombstone-seconds to change it for every queue",
            ),
        ):
            if queue.HasField(field) and _duration_s(getattr(queue, field)) != honoured:
                raise unimplemented(
                    f"Queue.{field} {_duration_s(getattr(queue, field)):g}s is not emulated "
                    f"per queue: the emulator honours {honoured:g}s ({how}); leave it unset"
                )

    def _queue_in(self, queue: Any) -> Any:
        if queue.type_ == _PULL:
            raise unimplemented(
                "Pull queues are not emulated: create a PUSH queue (leave Queue.type unset)"
            )
        self._check_ttls(queue)
        out = _to(tasks_v2.Queue, queue)
        if queue.app_engine_http_queue.HasField(_ROUTING):
            out.app_engine_routing_override.CopyFrom(
                _to(
                    tasks_v2.AppEngineRouting,
                    queue.app_engine_http_queue.app_engine_routing_override,
                )
            )
        return out

    def _mask_in(self, paths: list[str]) -> list[str]:
        """v2beta3 update_mask paths as v2's; ttl paths are checked by _check_ttls."""
        out: list[str] = []
        for path in paths:
            head, _, rest = path.partition(".")
            if head in ("type", "type_"):
                raise invalid("Queue.type is immutable: it is set when the queue is created")
            if head in ("task_ttl", "tombstone_ttl", "taskTtl", "tombstoneTtl"):
                continue
            if head == _AE_QUEUE:
                out.append(rest or _ROUTING)
            else:
                out.append(path)
        return out

    # -- queues: v2 -> v2beta3 ------------------------------------------------------
    def _stats(self, q: QueueState) -> Any:
        stats = b3.QueueStats.pb()()
        stats.tasks_count = len(q.tasks)
        if q.tasks:
            # Waiting tasks' times from the dispatch heap, so the protobufs of a large
            # backlog stay undecoded (emulator/state.py TaskState); those in flight are off it.
            waiting = [eta for eta, _ in q.waiting()]
            running = [get_time(ts.pb.schedule_time) for ts in q.tasks.values() if ts.in_flight]
            oldest = min(waiting + running, default=None)  # None: all awaiting their commit
            if oldest is not None:
                set_time(stats.oldest_estimated_arrival_time, oldest)
        stats.concurrent_dispatches_count = q.in_flight
        stats.effective_execution_rate = q.rate if q.running else 0.0
        return stats

    def _queue_out(self, pb: Any, read_mask: Any = None) -> Any:
        out = _to(b3.Queue, pb)
        if pb.HasField(_ROUTING):
            _copy(
                pb.app_engine_routing_override,
                out.app_engine_http_queue.app_engine_routing_override,
            )
        out.type_ = _PUSH
        out.task_ttl.seconds = TASK_TTL_S
        whole, fraction = divmod(self.tombstone_s, 1)
        out.tombstone_ttl.seconds = int(whole)
        out.tombstone_ttl.nanos = round(fraction * 1e9)
        if read_mask is None or not read_mask.paths:
            return out
        q = self.core.queues.get(pb.name)
        if q is not None:
            out.stats.CopyFrom(self._stats(q))
        masked = b3.Queue.pb()()
        read_mask.MergeMessage(out, masked)
        return masked

    @staticmethod
    def _read_mask(req: Any) -> Any:
        if not req.HasField("read_mask"):
            return None
        paths = ["type_" if p == "type" else p for p in req.read_mask.paths]
        mask = field_mask_pb2.FieldMask(paths=paths)
        descriptor: Descriptor = b3.Queue.pb().DESCRIPTOR
        if not mask.IsValidForDescriptor(descriptor):
            raise invalid(
                f"read_mask {', '.join(req.read_mask.paths)[:200]!r} names a field Queue does "
                "not have; e.g. read_mask=name,stats"
            )
        return mask

    def create_queue(self, req: Any) -> Any:
        v2 = tasks_v2.CreateQueueRequest.pb()(parent=req.parent)
        v2.queue.CopyFrom(self._queue_in(req.queue))
        return self._queue_out(self.core.create_queue(v2))

    def get_queue(self, req: Any) -> Any:
        mask = self._read_mask(req)
        return self._queue_out(self.core.get_queue(_to(tasks_v2.GetQueueRequest, req)), mask)

    def list_queues(self, req: Any) -> Any:
        mask = self._read_mask(req)
        resp = self.core.list_queues(_to(tasks_v2.ListQueuesRequest, req))
        out = b3.ListQueuesResponse.pb()(next_page_token=resp.next_page_token)
        for pb in resp.queues:
            out.queues.add().CopyFrom(self._queue_out(pb, mask))
        return out

    def update_queue(self, req: Any) -> Any:
        v2 = tasks_v2.UpdateQueueRequest.pb()()
        v2.queue.CopyFrom(self._queue_in(req.queue))
        if req.HasField("update_mask"):
            paths = self._mask_in(list(req.update_mask.paths))
            if req.update_mask.paths and not paths:  # only ttls, already checked
                return self.get_queue(b3.GetQueueRequest.pb()(name=req.queue.name))
            v2.update_mask.paths.extend(paths)
        return self._queue_out(self.core.update_queue(v2))

    def delete_queue(self, req: Any) -> None:
        self.core.delete_queue(_to(tasks_v2.DeleteQueueRequest, req))

    def purge_queue(self, req: Any) -> Any:
        return self._queue_out(self.core.purge_queue(_to(tasks_v2.PurgeQueueRequest, req)))

    def pause_queue(self, req: Any) -> Any:
        return self._queue_out(self.core.pause_queue(_to(tasks_v2.PauseQueueRequest, req)))

    def resume_queue(self, req: Any) -> Any:
        return self._queue_out(self.core.resume_queue(_to(tasks_v2.ResumeQueueRequest, req)))

    # -- tasks --------------------------------------------------------------------
    def create_task(self, req: Any) -> Any:
        if req.task.HasField("pull_message"):
            raise invalid(
                "Task.pull_message cannot be added to a push queue (the emulator serves "
                "push queues only): give the task an http_request or app_engine_http_request"
            )
        return _to(b3.Task, self.core.create_task(_to(tasks_v2.CreateTaskRequest, req)))

    def get_task(self, req: Any) -> Any:
        return _to(b3.Task, self.core.get_task(_to(tasks_v2.GetTaskRequest, req)))

    def list_tasks(self, req: Any) -> Any:
        return _to(b3.ListTasksResponse, self.core.list_tasks(_to(tasks_v2.ListTasksRequest, req)))

    def delete_task(self, req: Any) -> None:
        self.core.delete_task(_to(tasks_v2.DeleteTaskRequest, req))

    def run_task(self, req: Any) -> Any:
        return _to(b3.Task, self.core.run_task(_to(tasks_v2.RunTaskRequest, req)))


def call(method: str) -> Callable[[Emulator, Any], Any]:
    """``V2beta3Api(emulator).<method>(request)`` as a front end's route target."""

    def bound(emulator: Emulator, request: Any) -> Any:
        return getattr(V2beta3Api(emulator), method)(request)

    bound.__name__ = method
    return bound
