"""Task types for the worker's tests, loaded with TASKS_EXTRA_MODULES.

Each handler appends a JSON line to $TASKS_TEST_RECORD_FILE when it runs, so a
test can tell from outside the process whether (and how often, and with which
context) a handler ran.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service import (
    Claim,
    Completion,
    DeadLetter,
    InMemoryIdempotencyStore,
    PermanentError,
    TaskContext,
    TransientError,
    registry,
)

RECORD_FILE_ENV = "TASKS_TEST_RECORD_FILE"


def _record(event: str, task_id: str, ctx: TaskContext, **more: Any) -> None:
    entry = {
        "event": event,
        "id": task_id,
        "task_type": ctx.task_type,
        "task_name": ctx.task_name,
        "queue_name": ctx.queue_name,
        "retry_count": ctx.retry_count,
        "execution_count": ctx.execution_count,
        "eta": ctx.eta.timestamp() if ctx.eta else None,
        "previous_response": ctx.previous_response,
        "retry_reason": ctx.retry_reason,
        "trace_id": ctx.trace.trace_id if ctx.trace else None,
        "span_id": ctx.trace.span_id if ctx.trace else None,
        "sampled": ctx.trace.sampled if ctx.trace else None,
        "invoker_email": ctx.invoker_email,
        **more,
    }
    with open(os.environ[RECORD_FILE_ENV], "a") as f:
        f.write(json.dumps(entry) + "\n")


class RecordPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=100)
    sleep_s: float = Field(default=0, ge=0, le=30)


@registry.task("record", payload=RecordPayload)
async def record(payload: RecordPayload, ctx: TaskContext) -> dict[str, str]:
    _record("start", payload.id, ctx)
    if payload.sleep_s:
        await asyncio.sleep(payload.sleep_s)
    _record("end", payload.id, ctx)
    return {"id": payload.id}


@registry.task("record_sync", payload=RecordPayload)
def record_sync(payload: RecordPayload, ctx: TaskContext) -> dict[str, str]:
    # A plain function: the worker must run it in a thread, off the event loop.
    import threading

    _record("start", payload.id, ctx, thread=threading.current_thread().name)
    return {"id": payload.id}


class StrictPayload(BaseModel):
    """A payload with constraints of every kind, for the malformed-payload tests."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=100)
    count: int = Field(ge=1, le=10)
    tags: list[str] = Field(default_factory=list, max_length=5)


@registry.task("strict", payload=StrictPayload)
async def strict(payload: StrictPayload, ctx: TaskContext) -> dict[str, int]:
    _record("start", payload.id, ctx)
    return {"count": payload.count}


class FailPayload(BaseModel):
    id: str
    retry_after: float | None = None
    status: int = 503
    message: str = "backend unavailable"


@registry.task("fail_transient", payload=FailPayload)
async def fail_transient(payload: FailPayload, ctx: TaskContext) -> None:
    _record("start", payload.id, ctx)
    raise TransientError(payload.message, retry_after=payload.retry_after, status=payload.status)


@registry.task("fail_permanent", payload=FailPayload)
async def fail_permanent(payload: FailPayload, ctx: TaskContext) -> None:
    _record("start", payload.id, ctx)
    raise PermanentError(payload.message)


@registry.task("crash", payload=FailPayload)
async def crash(payload: FailPayload, ctx: TaskContext) -> None:
    _record("start", payload.id, ctx)
    raise RuntimeError(payload.message)


@registry.task("flaky", payload=FailPayload)
async def flaky(payload: FailPayload, ctx: TaskContext) -> dict[str, str]:
    """Fails on the first attempt, succeeds on any retry."""
    _record("start", payload.id, ctx)
    if not ctx.retry_count:
        raise TransientError("first attempt always fails", retry_after=1)
    return {"id": payload.id}


# --- plug-ins loaded with TASKS_DEAD_LETTER_SINK / TASKS_IDEMPOTENCY_STORE -----------

PLUGIN_FILE_ENV = "TASKS_TEST_PLUGIN_FILE"


def _plugin_record(entry: dict[str, Any]) -> None:
    with open(os.environ[PLUGIN_FILE_ENV], "a") as f:
        f.write(json.dumps(entry) + "\n")


class FileSink:
    """A DeadLetterSink that appends each letter to a file."""

    async def record(self, letter: DeadLetter) -> None:
        _plugin_record(
            {
                "sink": "letter",
                "task_name": letter.task_name,
                "reason": letter.reason,
                "body": letter.body.decode(),
                "headers": dict(letter.headers),
            }
        )


class BrokenSink:
    async def record(self, letter: DeadLetter) -> None:
        raise ConnectionError("sink backend down")


class RecordingStore:
    """The in-memory store, with every call written to a file."""

    def __init__(self) -> None:
        self._inner = InMemoryIdempotencyStore()

    async def claim(self, key: str, *, lease_s: float) -> Claim:
        claim = await self._inner.claim(key, lease_s=lease_s)
        _plugin_record({"store": "claim", "key": key, "state": claim.state.value})
        return claim

    async def complete(self, key: str, completion: Completion) -> None:
        _plugin_record({"store": "complete", "key": key, "outcome": completion.outcome})
        await self._inner.complete(key, completion)

    async def release(self, key: str) -> None:
        _plugin_record({"store": "release", "key": key})
        await self._inner.release(key)


# A ready instance (used as is, not called); empty, so falsy through its __len__.
EMPTY_STORE = InMemoryIdempotencyStore()


class BrokenStore:
    async def claim(self, key: str, *, lease_s: float) -> Claim:
        raise ConnectionError("redis down")

    async def complete(self, key: str, completion: Completion) -> None:
        raise ConnectionError("redis down")

    async def release(self, key: str) -> None:
        raise ConnectionError("redis down")


@registry.task("bounded", payload=RecordPayload, timeout_s=0.3)
async def bounded(payload: RecordPayload, ctx: TaskContext) -> dict[str, str]:
    """Declared with a 0.3 s timeout."""
    _record("start", payload.id, ctx)
    await asyncio.sleep(payload.sleep_s)
    _record("end", payload.id, ctx)
    return {"id": payload.id}


@registry.task("bounded_sync", payload=RecordPayload, timeout_s=0.3)
def bounded_sync(payload: RecordPayload, ctx: TaskContext) -> dict[str, str]:
    """A plain function with a 0.3 s timeout: its thread cannot be stopped."""
    import time

    _record("start", payload.id, ctx)
    time.sleep(payload.sleep_s)
    _record("end", payload.id, ctx)
    return {"id": payload.id}
