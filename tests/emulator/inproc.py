"""The emulator core in-process, on a fake clock, with a scripted in-process deliverer.

:class:`Harness` builds :class:`emulator.core.Emulator` with a
:class:`~emulator.clock.FakeClock` and a :class:`FakeDeliverer`, and offers
the API calls with plain dicts (as the official client takes them). Tests
advance the clock instead of sleeping, so seconds of retry and rate semantics
run in milliseconds and every time is exact.

The deliverer answers by URL path like the HTTP target of conftest.py:
``/status/CODE`` answers CODE (429 and 503 with ``Retry-After: 2``),
``/sleep/S`` answers 200 after S seconds of fake time, ``/flaky/N`` answers
500 N times per task then 200, ``/unreachable`` raises Unreachable, anything
else answers 200. It deliberately does no HTTP: wire formats are tested
against a real process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from google.cloud import tasks_v2

from contract.names import HEADER_TASK_NAME
from emulator.appengine import AppEngineHosts
from emulator.clock import FakeClock
from emulator.core import Emulator
from emulator.delivery import DeliveryResult, OutboundRequest, Unreachable
from emulator.oidc import OidcIssuer
from emulator.store import Store

PARENT = "projects/inproc/locations/l"
FULL = tasks_v2.Task.View.FULL
_ISSUER: list[OidcIssuer] = []


def shared_issuer() -> OidcIssuer:
    """One signing key for every in-process test (generating one costs tens of ms)."""
    if not _ISSUER:
        _ISSUER.append(OidcIssuer())
    return _ISSUER[0]


@dataclass(frozen=True)
class Sent:
    request: OutboundRequest
    at: float  # fake wall-clock time the delivery started

    @property
    def path(self) -> str:
        parts = urlsplit(self.request.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    @property
    def headers(self) -> dict[str, str]:
        return self.request.headers


@dataclass
class FakeDeliverer:
    clock: FakeClock
    sent: list[Sent] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    active: int = 0
    max_active: int = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def for_task(self, task_name: str) -> list[Sent]:
        task_id = task_name.rsplit("/", 1)[1]
        return [s for s in self.sent if s.headers.get(HEADER_TASK_NAME) == task_id]

    async def deliver(self, request: OutboundRequest) -> DeliveryResult:
        self.sent.append(Sent(request, self.clock.now()))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            return await self._answer(request)
        finally:
            self.active -= 1

    async def _answer(self, request: OutboundRequest) -> DeliveryResult:
        parts = urlsplit(request.url).path.strip("/").split("/")
        kind, arg = parts[0], parts[1] if len(parts) > 1 else ""
        if kind == "unreachable":
            raise Unreachable(f"Could not reach {request.url}: ConnectionRefusedError")
        if kind == "status":
            status = int(arg)
            headers = {"Retry-After": "2"} if status in (429, 503) else {}
            return DeliveryResult(status, "", headers)
        if kind == "sleep":
            await self.clock.sleep(float(arg))
        if kind == "flaky":
            key = request.headers.get(HEADER_TASK_NAME, "")
            self.counts[key] = self.counts.get(key, 0) + 1
            return DeliveryResult(500 if self.counts[key] <= int(arg) else 200)
        return DeliveryResult(200, "OK")


class Harness:
    """An :class:`Emulator` on a fake clock; start it inside the event loop
    (``async with Harness() as h``, or as an argument of an ``async def`` test)."""

    def __init__(
        self,
        *,
        tombstone_seconds: float = 3600.0,
        store: Store | None = None,
        start: float = 1_800_000_000.0,
        app_engine_hosts: AppEngineHosts | None = None,
    ) -> None:
        self.clock = FakeClock(start)
        self.deliverer = FakeDeliverer(self.clock)
        self.emulator = Emulator(
            store=store,
            tombstone_seconds=tombstone_seconds,
            issuer=shared_issuer(),
            clock=self.clock,
            deliverer=self.deliverer,
            app_engine_hosts=app_engine_hosts,
        )
        self._queues = 0

    async def start(self) -> None:
        await self.emulator.start()

    async def close(self) -> None:
        await self.emulator.close()

    async def __aenter__(self) -> Harness:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- time ---------------------------------------------------------------
    async def advance(self, seconds: float) -> None:
        await self.clock.advance(seconds)

    async def settle(self) -> None:
        await self.clock.settle()

    def now(self) -> float:
        return self.clock.now()

    # -- API calls, with dicts as the official client takes them ------------
    def _call(self, method: Callable[[Any], Any], request_type: Any, **fields: Any) -> Any:
        return method(request_type.pb(request_type(**fields)))

    def create_queue(self, **fields: Any) -> str:
        self._queues += 1
        name = fields.pop("name", f"{PARENT}/queues/q{self._queues}")
        queue = {"name": name, **fields}
        self._call(
            self.emulator.create_queue, tasks_v2.CreateQueueRequest, parent=PARENT, queue=queue
        )
        return str(name)

    def create_task(self, queue: str, *, view: int = 0, **task: Any) -> Any:
        return self._call(
            self.emulator.create_task,
            tasks_v2.CreateTaskRequest,
            parent=queue,
            task=task,
            response_view=view,
        )

    def get_task(self, name: str, view: int = FULL) -> Any:
        return self._call(
            self.emulator.get_task, tasks_v2.GetTaskRequest, name=name, response_view=view
        )

    def exists(self, task_name: str) -> bool:
        queue = task_name.rsplit("/tasks/", 1)[0]
        q = self.emulator.queues.get(queue)
        return q is not None and task_name in q.tasks

    def update_queue(self, queue: str, **fields: Any) -> Any:
        request = tasks_v2.UpdateQueueRequest
        return self._call(self.emulator.update_queue, request, queue={"name": queue, **fields})

    def delete_task(self, name: str) -> None:
        self._call(self.emulator.delete_task, tasks_v2.DeleteTaskRequest, name=name)

    def run_task(self, name: str) -> Any:
        return self._call(self.emulator.run_task, tasks_v2.RunTaskRequest, name=name)

    def pause(self, queue: str) -> None:
        self._call(self.emulator.pause_queue, tasks_v2.PauseQueueRequest, name=queue)

    def resume(self, queue: str) -> None:
        self._call(self.emulator.resume_queue, tasks_v2.ResumeQueueRequest, name=queue)

    def purge(self, queue: str) -> Any:
        return self._call(self.emulator.purge_queue, tasks_v2.PurgeQueueRequest, name=queue)

    def delete_queue(self, queue: str) -> None:
        self._call(self.emulator.delete_queue, tasks_v2.DeleteQueueRequest, name=queue)

    def list_tasks(self, queue: str) -> list[str]:
        resp = self._call(self.emulator.list_tasks, tasks_v2.ListTasksRequest, parent=queue)
        return [t.name for t in resp.tasks]
