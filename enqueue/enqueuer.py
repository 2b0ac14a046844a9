"""Enqueuers: one call per task, done right, synchronously or with asyncio.

``Enqueuer.send`` and ``AsyncEnqueuer.send`` return the full name of the task.
Before the first attempt every task gets its final name: the caller's, the hash
of its idempotency key, or a random id. Transient errors are retried with the
same name, so a create that succeeded but whose answer was lost comes back as
ALREADY_EXISTS instead of a second task. ALREADY_EXISTS is reported as "already
enqueued" (``EnqueueResult.status``); ``already_exists_is_error=True`` makes it an
``AlreadyEnqueuedError``. For a random name the ALREADY_EXISTS can only come from
this call's own earlier attempt, so it counts as created.

This module deliberately does not read files or print: bulk input and the
command line live in ``enqueue.bulk`` and ``enqueue.cli``.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self

import grpc
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2

from contract.routing import DEFAULT_QUEUE_KEY
from enqueue.client import (
    AttemptCounter,
    async_retry,
    create_task_metadata,
    describe_api_error,
    make_async_client,
    make_client,
    next_attempt,
    resolve_endpoint,
    sync_retry,
)
from enqueue.defaults import RetryPolicy, Transport
from enqueue.errors import AlreadyEnqueuedError, EnqueueFailedError, LargeTaskWarning
from enqueue.outputs import StackOutputs
from enqueue.spec import BuiltTask, TaskSpec, build_task, random_task_id

Status = Literal["created", "already_enqueued"]
_CREATE_TASK_REQUEST_PB = tasks_v2.CreateTaskRequest.pb()


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """What happened to one task.

    Attributes:
        name: full task name ``projects/P/locations/L/queues/Q/tasks/ID``.
        status: ``created``, or ``already_enqueued`` when a task of that name existed.
        attempts: create calls made (1 unless transient errors were retried).
        warnings: size warnings (over 100 KB), also issued as ``LargeTaskWarning``.
        queue: the key of the queue the task went to (its route, or the override).
    """

    name: str
    status: Status
    attempts: int
    warnings: tuple[str, ...] = ()
    queue: str = DEFAULT_QUEUE_KEY


def make_spec(
    task: TaskSpec | str,
    data: Any = None,
    *,
    body: bytes | None = None,
    name: str | None = None,
    key: str | None = None,
    delay: float | None = None,
    schedule_time: datetime | None = None,
    deadline: float | None = None,
    headers: Mapping[str, str] | None = None,
    queue: str | None = None,
) -> TaskSpec:
    """A ``TaskSpec`` from either a spec or a type plus keyword arguments."""
    if isinstance(task, TaskSpec):
        given = (data, body, name, key, delay, schedule_time, deadline, headers, queue)
        if any(value is not None for value in given):
            raise TypeError("pass either a TaskSpec or a task type with keyword arguments")
        return task
    return TaskSpec(
        type=task,
        data={} if data is None else data,
        body=body,
        name=name,
        key=key,
        delay=delay,
        schedule_time=schedule_time,
        deadline=deadline,
        headers={} if headers is None else headers,
        queue=queue,
    )


def _is_already_exists(exc: gexc.Conflict) -> bool:
    # gRPC says ALREADY_EXISTS; REST says HTTP 409, which api_core maps to the
    # Conflict base class. For CreateTask a 409 means the name exists (ABORTED,
    # the other 409, is not an answer CreateTask gives).
    return not isinstance(exc, gexc.Aborted)


class _Base:
    def __init__(
        self,
        outputs: StackOutputs,
        *,
        transport: Transport,
        retry: RetryPolicy | None,
        already_exists_is_error: bool,
        env: Mapping[str, str] | None,
    ) -> None:
        self.outputs = outputs
        self.transport: Transport = transport
        self.retry_policy = retry or RetryPolicy()
        self.already_exists_is_error = already_exists_is_error
        self._env = env
        self.endpoint = resolve_endpoint(outputs, env)
        self._endpoint_text = self.endpoint.describe(transport)

    def _prepare(self, spec: TaskSpec) -> tuple[BuiltTask, bool]:
        """Build the task with its final name; True when the name was generated."""
        task_id = spec.task_id()
        generated = task_id is None
        built = build_task(spec, self.outputs, task_id=task_id or random_task_id())
        for message in built.warnings:
            warnings.warn(LargeTaskWarning(message), stacklevel=4)
        return built, generated

    def _request(self, built: BuiltTask) -> tasks_v2.CreateTaskRequest:
        pb = _CREATE_TASK_REQUEST_PB(parent=built.target.path, task=tasks_v2.Task.pb(built.task))
        request: tasks_v2.CreateTaskRequest = tasks_v2.CreateTaskRequest.wrap(pb)
        return request

    def _on_exists(self, built: BuiltTask, generated: bool, attempts: int) -> EnqueueResult:
        name: str = built.task.name
        if generated and attempts > 1:
            # Nobody else knows a random name: our own lost-answer attempt made it.
            return EnqueueResult(name, "created", attempts, built.warnings, built.target.key)
        if self.already_exists_is_error:
            raise AlreadyEnqueuedError(name)
        return EnqueueResult(name, "already_enqueued", attempts, built.warnings, built.target.key)

    def _failed(self, exc: Exception, built: BuiltTask, attempts: int) -> EnqueueFailedError:
        message = describe_api_error(
            exc,
            outputs=self.outputs,
            endpoint=self._endpoint_text,
            attempts=attempts,
            queue=built.target.path,
        )
        return EnqueueFailedError(message, name=built.task.name, attempts=attempts)


class Enqueuer(_Base):
    """Synchronous enqueuer over a ``CloudTasksClient`` (thread-safe, reusable).

    Args:
        outputs: the stack outputs (see ``load_outputs``).
        transport: ``grpc`` (default) or ``rest``.
        client: an existing client to use instead of building one.
        retry: the retry policy for transient errors.
        already_exists_is_error: raise ``AlreadyEnqueuedError`` on a duplicate name.
        env: environment to read ``CLOUD_TASKS_EMULATOR_HOST`` from (default ``os.environ``).
    """

    def __init__(
        self,
        outputs: StackOutputs,
        *,
        transport: Transport = "grpc",
        client: tasks_v2.CloudTasksClient | None = None,
        retry: RetryPolicy | None = None,
        already_exists_is_error: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            outputs,
            transport=transport,
            retry=retry,
            already_exists_is_error=already_exists_is_error,
            env=env,
        )
        # A client the caller passed in stays theirs to close.
        self._owns_client = client is None
        self._client = client or make_client(outputs, transport, env=env)

    @property
    def client(self) -> tasks_v2.CloudTasksClient:
        """The underlying client, e.g. for ``get_task`` over the same connection."""
        return self._client

    def enqueue(self, spec: TaskSpec) -> EnqueueResult:
        """Create one task; returns what happened. Raises ``EnqueueError`` subclasses."""
        built, generated = self._prepare(spec)
        counter = AttemptCounter(self.retry_policy.max_attempts)
        try:
            self._client.create_task(
                request=self._request(built),
                retry=sync_retry(self.retry_policy, counter),
                timeout=self.retry_policy.attempt_timeout,
            )
        except gexc.Conflict as exc:
            if not _is_already_exists(exc):
                raise self._failed(exc, built, counter.attempts) from exc
            return self._on_exists(built, generated, counter.attempts)
        except Exception as exc:
            if isinstance(exc, gexc.GoogleAPIError | OSError):
                raise self._failed(exc, built, counter.attempts) from exc
            raise
        return EnqueueResult(
            built.task.name, "created", counter.attempts, built.warnings, built.target.key
        )

    def send(self, task: TaskSpec | str, data: Any = None, **options: Any) -> str:
        """Create one task and return its full name (also when already enqueued).

        ``task`` is a ``TaskSpec`` or a task type; ``options`` are the other
        ``TaskSpec`` fields (body, name, key, delay, schedule_time, deadline, headers,
        queue). The task goes to the queue its type is routed to (``routes``), or to
        ``queue=`` (a key) if given, with that queue's default deadline.
        """
        return self.enqueue(make_spec(task, data, **options)).name

    def close(self) -> None:
        """Close the client's connection, unless the client was passed in."""
        if self._owns_client:
            self._client.transport.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncEnqueuer(_Base):
    """The asyncio twin of ``Enqueuer``, with the same results and errors.

    Over gRPC it uses ``CloudTasksAsyncClient`` (built lazily, inside the running
    loop): the first attempt of each create goes straight to its transport's stub,
    retries through the client's own retry (``enqueue.client.next_attempt``). Over
    REST, which has no async client, it runs the synchronous REST client in a thread
    pool of ``rest_threads`` threads.
    """

    def __init__(
        self,
        outputs: StackOutputs,
        *,
        transport: Transport = "grpc",
        client: tasks_v2.CloudTasksAsyncClient | None = None,
        retry: RetryPolicy | None = None,
        already_exists_is_error: bool = False,
        env: Mapping[str, str] | None = None,
        rest_threads: int = 16,
    ) -> None:
        super().__init__(
            outputs,
            transport=transport,
            retry=retry,
            already_exists_is_error=already_exists_is_error,
            env=env,
        )
        self._owns_client = client is None
        self._client = client
        self._metadata: dict[str, tuple[tuple[str, str], ...]] = {}
        self._sync: Enqueuer | None = None
        self._pool: ThreadPoolExecutor | None = None
        if transport == "rest":
            self._sync = Enqueuer(
                outputs,
                transport="rest",
                retry=retry,
                already_exists_is_error=already_exists_is_error,
                env=env,
            )
            self._pool = ThreadPoolExecutor(max_workers=rest_threads, thread_name_prefix="enqueue")

    @property
    def client(self) -> tasks_v2.CloudTasksAsyncClient:
        """The underlying gRPC async client (built on first use)."""
        if self.transport == "rest":
            raise TypeError("the REST transport has no async client; use Enqueuer.client")
        if self._client is None:
            self._client = make_async_client(self.outputs, env=self._env)
        return self._client

    async def enqueue(self, spec: TaskSpec) -> EnqueueResult:
        """Create one task; returns what happened. Raises ``EnqueueError`` subclasses."""
        if self._sync is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, self._sync.enqueue, spec)
        built, generated = self._prepare(spec)
        counter = AttemptCounter(self.retry_policy.max_attempts)
        try:
            await self._create(self._request(built), built.target.path, counter)
        except gexc.Conflict as exc:
            if not _is_already_exists(exc):
                raise self._failed(exc, built, counter.attempts) from exc
            return self._on_exists(built, generated, counter.attempts)
        except Exception as exc:
            if isinstance(exc, gexc.GoogleAPIError | OSError):
                raise self._failed(exc, built, counter.attempts) from exc
            raise
        return EnqueueResult(
            built.task.name, "created", counter.attempts, built.warnings, built.target.key
        )

    async def _create(
        self, request: tasks_v2.CreateTaskRequest, parent: str, counter: AttemptCounter
    ) -> None:
        """Create with retries; raises the API's error as ``google.api_core`` maps it.

        The first attempt skips the generated client's per-call wrapping (its retry
        object, metadata merging, error wrapper): most creates succeed at once, and
        in a bulk run that wrapping was about a tenth of the client's CPU per task.
        """
        policy = self.retry_policy
        metadata = self._metadata.get(parent)
        if metadata is None:
            metadata = self._metadata[parent] = create_task_metadata(parent)
        # The transport's gRPC stub (typed loosely by the library as a one-argument callable).
        stub: Any = self.client.transport.create_task
        started = time.monotonic()
        try:
            await stub(request, timeout=policy.attempt_timeout, metadata=metadata)
            return
        except grpc.RpcError as rpc_error:
            # Mapped as the generated client maps it (grpc_helpers_async does the same).
            exc = gexc.from_grpc_error(rpc_error)  # type: ignore[no-untyped-call]
            exc.__cause__ = rpc_error
        delay, rest = next_attempt(policy, counter, exc, time.monotonic() - started)
        await asyncio.sleep(delay)
        await self.client.create_task(
            request=request, retry=async_retry(rest, counter), timeout=policy.attempt_timeout
        )

    async def send(self, task: TaskSpec | str, data: Any = None, **options: Any) -> str:
        """Create one task and return its full name (also when already enqueued)."""
        return (await self.enqueue(make_spec(task, data, **options))).name

    async def close(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.transport.close()  # type: ignore[no-untyped-call]
        if self._sync is not None:
            self._sync.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
