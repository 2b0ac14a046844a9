"""Task types: each declared once, with a typed payload model and a handler.

    from pydantic import BaseModel
    from service import TaskContext, registry

    class ResizePayload(BaseModel):
        image: str
        width: int

    @registry.task("resize", payload=ResizePayload)
    async def resize(payload: ResizePayload, ctx: TaskContext) -> dict[str, int]:
        ...

A handler is `(payload, ctx) -> result`, async or plain; a plain one runs in
a worker thread so it cannot stall the event loop. The result, if any, must be
JSON-serialisable; it is returned in the response body (Cloud Tasks ignores
it, people debugging with curl do not).

The registry deliberately does not discover modules: the built-in types are
in `service.handlers`, and a team's own modules are listed in
`TASKS_EXTRA_MODULES` or imported by a module that is.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar, cast

from pydantic import BaseModel

from contract.task_types import task_type_problem
from service.context import TaskContext

P = TypeVar("P", bound=BaseModel)

AsyncHandler = Callable[[P, TaskContext], Awaitable[Any]]
SyncHandler = Callable[[P, TaskContext], Any]
Handler = AsyncHandler[P] | SyncHandler[P]


@dataclass(frozen=True, slots=True)
class TaskType(Generic[P]):
    """One registered task type."""

    name: str
    payload: type[P]
    handler: Handler[P]
    is_async: bool
    timeout_s: float | None = None


class TaskRegistry:
    """Maps a task type name to its payload model and handler."""

    def __init__(self) -> None:
        self._types: dict[str, TaskType[Any]] = {}

    def task(
        self, name: str, *, payload: type[P], timeout_s: float | None = None
    ) -> Callable[[Handler[P]], Handler[P]]:
        """Declare task type `name`; decorate its handler.

        Args:
            name: the `{type}` of `POST /tasks/{type}`.
            payload: the pydantic model the JSON body must validate against.
            timeout_s: optional limit on one run; past it the run is abandoned
                and answered 503 (retried). Keep it below the queue's dispatch
                deadline, so the worker answers before Cloud Tasks gives up on
                the attempt. A plain (thread) handler keeps running in its
                thread: only its answer is abandoned.

        Raises:
            ValueError: the name is not a valid path segment or is already taken.
            TypeError: `payload` is not a pydantic model class.
        """
        # One rule with the enqueue helper (contract.task_types), so a type one side
        # accepts is never refused by the other.
        if (problem := task_type_problem(name)) is not None:
            raise ValueError(problem)
        if timeout_s is not None and not (0 < timeout_s < float("inf")):
            raise ValueError(f"task type {name!r}: timeout_s={timeout_s!r} must be > 0 seconds")
        if not (isinstance(payload, type) and issubclass(payload, BaseModel)):
            raise TypeError(
                f"task type {name!r}: payload must be a pydantic BaseModel subclass, "
                f"got {payload!r}"
            )

        def register(handler: Handler[P]) -> Handler[P]:
            if name in self._types:
                existing = self._types[name].handler
                raise ValueError(
                    f"task type {name!r} is already registered by "
                    f"{existing.__module__}.{existing.__qualname__}; pick another name"
                )
            self._types[name] = TaskType(
                name=name,
                payload=payload,
                handler=handler,
                is_async=inspect.iscoroutinefunction(handler),
                timeout_s=timeout_s,
            )
            return handler

        return register

    def get(self, name: str) -> TaskType[Any] | None:
        """The task type called `name`, or None."""
        return self._types.get(name)

    def names(self) -> list[str]:
        """Registered type names, sorted."""
        return sorted(self._types)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[TaskType[Any]]:
        return iter(list(self._types.values()))

    def __len__(self) -> int:
        return len(self._types)


registry: Final = TaskRegistry()
"""The process-wide registry the app serves; import it as `from service import registry`."""


# Plain handlers run here, not in the event loop's default executor (min(32, CPUs + 4)
# threads: 6 on a 2-CPU instance). 40 is anyio's (and Starlette's) default limit.
HANDLER_THREADS: Final = 40
_executor = ThreadPoolExecutor(max_workers=HANDLER_THREADS, thread_name_prefix="task-handler")
_busy_lock = threading.Lock()
_busy = 0


def busy_handler_threads() -> int:
    """Plain handlers still running in a thread (including ones past their timeout)."""
    return _busy


def _run_counted(context: contextvars.Context, call: Callable[[], Any]) -> Any:
    global _busy
    with _busy_lock:
        _busy += 1
    try:
        return context.run(call)
    finally:
        with _busy_lock:
            _busy -= 1


def start_handler(task_type: TaskType[Any], payload: Any, ctx: TaskContext) -> Awaitable[Any]:
    """Start the handler: a coroutine for async handlers, a thread's future for plain ones.

    A thread cannot be stopped, so a caller that stops waiting (a timeout) gets to
    know it is still running from the future, and must not let the task run again
    until it ends.
    """
    if task_type.is_async:
        return cast(Awaitable[Any], task_type.handler(payload, ctx))
    loop = asyncio.get_running_loop()
    # copy_context: the handler's own log lines carry the delivery's task fields.
    call = functools.partial(task_type.handler, payload, ctx)
    return loop.run_in_executor(_executor, _run_counted, contextvars.copy_context(), call)
