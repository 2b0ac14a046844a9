"""Many tasks at once: from an iterable or a JSONL file, with bounded concurrency.

Each JSONL line is one object: ``{"type": ..., "data": ..., "name": ...}`` plus the
optional ``key``, ``delay``, ``schedule_time`` (RFC 3339), ``deadline``,
``headers`` and ``queue`` (a queue key overriding the type's route). Every
input item ends as exactly one outcome (created, already enqueued or failed):
a line that is not JSON, has an unknown field or fails validation is a failure
with its line number, never skipped. Failures are written as JSONL in the input
format, with the reason under ``_failure``, so the file can be fed back in once
the cause is fixed; a task that had no name gets the name its attempts used, so
feeding it back cannot create it twice.

This module deliberately does not print or draw progress (the CLI does, through
the ``on_outcome`` callback) and reads its input lazily, so memory stays bounded
by the concurrency, not by the size of the file.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

from enqueue.defaults import DEFAULT_CONCURRENCY, MAX_CONCURRENCY
from enqueue.enqueuer import AsyncEnqueuer
from enqueue.errors import AlreadyEnqueuedError, EnqueueError, EnqueueFailedError
from enqueue.spec import TaskSpec

FAILURE_FIELD = "_failure"
SPEC_FIELDS = (
    "type",
    "data",
    "name",
    "key",
    "delay",
    "schedule_time",
    "deadline",
    "headers",
    "queue",
)

OutcomeStatus = Literal["created", "already_enqueued", "failed"]


@dataclass(frozen=True, slots=True)
class BulkItem:
    """One input item: a spec, or the reason it could not become one.

    ``line`` is the 1-based JSONL line (or the 1-based position in an iterable);
    ``record`` is the parsed JSON object, kept to write failures back.
    """

    line: int
    spec: TaskSpec | None = None
    error: str | None = None
    record: dict[str, Any] | None = None
    raw: str | None = None


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    item: BulkItem
    status: OutcomeStatus
    name: str | None = None
    reason: str | None = None
    attempts: int = 0
    warnings: tuple[str, ...] = ()

    def failure_record(self) -> dict[str, Any]:
        """The failed item in input format, with the reason under ``_failure``."""
        failure: dict[str, Any] = {"line": self.item.line, "reason": self.reason}
        if self.item.record is None and self.item.spec is None:
            failure["raw"] = self.item.raw
            return {FAILURE_FIELD: failure}
        record = dict(self.item.record) if self.item.record is not None else _to_record(self.item)
        spec = self.item.spec
        if spec is not None and spec.task_id() is None and self.name is not None:
            # The attempts used this name; reusing it keeps a retry from duplicating.
            record["name"] = self.name.rsplit("/", 1)[-1]
        record[FAILURE_FIELD] = failure
        return record


def _to_record(item: BulkItem) -> dict[str, Any]:
    spec = item.spec
    assert spec is not None
    record: dict[str, Any] = {"type": spec.type, "data": spec.data}
    if spec.body is not None:
        record["data"] = spec.body.decode("utf-8", errors="replace")
    for key in ("name", "key", "delay", "deadline", "queue"):
        value = getattr(spec, key)
        if value is not None:
            record[key] = value
    if spec.schedule_time is not None:
        record["schedule_time"] = spec.schedule_time.isoformat()
    if spec.headers:
        record["headers"] = dict(spec.headers)
    return record


@dataclass(slots=True)
class BulkSummary:
    """Counts of a bulk run; ``failed`` keeps every failed outcome with its reason."""

    created: int = 0
    already_enqueued: int = 0
    failed: list[TaskOutcome] = field(default_factory=list)
    warnings: int = 0
    elapsed: float = 0.0

    @property
    def total(self) -> int:
        return self.created + self.already_enqueued + len(self.failed)

    def add(self, outcome: TaskOutcome) -> None:
        self.warnings += len(outcome.warnings)
        if outcome.status == "created":
            self.created += 1
        elif outcome.status == "already_enqueued":
            self.already_enqueued += 1
        else:
            self.failed.append(outcome)


def spec_from_record(record: Any) -> TaskSpec:
    """A ``TaskSpec`` from one decoded JSONL object (raises ``TaskValidationError``)."""
    from enqueue.errors import TaskValidationError

    if not isinstance(record, dict):
        raise TaskValidationError(
            "line",
            f'expected a JSON object like {{"type": "email", "data": {{}}}}, got '
            f"{type(record).__name__}",
        )
    unknown = sorted(k for k in record if k not in SPEC_FIELDS and k != FAILURE_FIELD)
    if unknown:
        raise TaskValidationError(
            unknown[0],
            f"unknown field(s) {', '.join(unknown)}: allowed are {', '.join(SPEC_FIELDS)}",
        )
    if "type" not in record:
        raise TaskValidationError("type", "missing: every line needs the task type")
    schedule_time = record.get("schedule_time")
    if schedule_time is not None:
        if not isinstance(schedule_time, str):
            raise TaskValidationError(
                "schedule_time", "must be an RFC 3339 string like 2030-01-01T00:00:00Z"
            )
        try:
            schedule_time = datetime.fromisoformat(schedule_time)
        except ValueError:
            raise TaskValidationError(
                "schedule_time",
                f"{record['schedule_time']!r} is not an RFC 3339 time like 2030-01-01T00:00:00Z",
            ) from None
    headers = record.get("headers")
    return TaskSpec(
        type=record["type"],
        data=record.get("data", {}),
        name=record.get("name"),
        key=record.get("key"),
        delay=record.get("delay"),
        schedule_time=schedule_time,
        deadline=record.get("deadline"),
        headers={} if headers is None else headers,
        queue=record.get("queue"),
    )


_CARRIED_OVER = "carried over from an earlier run whose line was not a task object"


def _carried_over(reason: object) -> str:
    if isinstance(reason, str) and reason.startswith(_CARRIED_OVER):
        return reason  # fed back more than once: keep the first run's reason
    detail = f" ({reason})" if isinstance(reason, str) and reason else ""
    return f"{_CARRIED_OVER}{detail}: rewrite it as a task object"


def read_jsonl(stream: Iterable[bytes] | Iterable[str]) -> Iterator[BulkItem]:
    """Items from JSONL, lazily; blank lines are skipped, nothing else is.

    A binary stream is decoded line by line, so one line that is not UTF-8 is one
    failure instead of an error that stops the whole run.
    """
    for number, line in enumerate(stream, start=1):
        if isinstance(line, bytes):
            try:
                decoded = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield BulkItem(
                    line=number,
                    error=f"not valid UTF-8 (byte {exc.start + 1}): save the file as UTF-8",
                    raw=line.decode("utf-8", errors="replace").strip(),
                )
                continue
        else:
            decoded = str(line)
        text = decoded.strip()
        if not text:
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            yield BulkItem(
                line=number, error=f"not valid JSON ({exc.msg} at column {exc.colno})", raw=text
            )
            continue
        previous = record.get(FAILURE_FIELD) if isinstance(record, dict) else None
        if isinstance(previous, dict) and "raw" in previous and set(record) == {FAILURE_FIELD}:
            # Only a line that was no task object at all is written back with "raw";
            # any other record (even {}) is validated again below for its real reason.
            raw = previous.get("raw")
            yield BulkItem(
                line=number,
                error=_carried_over(previous.get("reason")),
                raw=raw if isinstance(raw, str) else text,
            )
            continue
        try:
            spec = spec_from_record(record)
        except EnqueueError as exc:
            yield BulkItem(
                line=number,
                error=str(exc),
                record=record if isinstance(record, dict) else None,
                raw=text,
            )
            continue
        yield BulkItem(line=number, spec=spec, record=record, raw=text)


def items_from(tasks: Iterable[TaskSpec | BulkItem]) -> Iterator[BulkItem]:
    for position, task in enumerate(tasks, start=1):
        yield task if isinstance(task, BulkItem) else BulkItem(line=position, spec=task)


async def _one(enqueuer: AsyncEnqueuer, item: BulkItem, queue: str | None) -> TaskOutcome:
    if item.spec is None:
        return TaskOutcome(item, "failed", reason=item.error)
    spec = item.spec
    if queue is not None and spec.queue is None:
        spec = replace(spec, queue=queue)
    try:
        result = await enqueuer.enqueue(spec)
    except AlreadyEnqueuedError as exc:
        return TaskOutcome(item, "failed", name=exc.name, reason=str(exc))
    except EnqueueFailedError as exc:
        return TaskOutcome(item, "failed", name=exc.name, reason=str(exc), attempts=exc.attempts)
    except EnqueueError as exc:
        return TaskOutcome(item, "failed", reason=str(exc))
    return TaskOutcome(
        item, result.status, name=result.name, attempts=result.attempts, warnings=result.warnings
    )


async def enqueue_many(
    enqueuer: AsyncEnqueuer,
    tasks: Iterable[TaskSpec | BulkItem],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_outcome: Callable[[TaskOutcome], None] | None = None,
    queue: str | None = None,
) -> BulkSummary:
    """Enqueue every task with at most ``concurrency`` creates in flight.

    Each task goes to the queue its type is routed to, unless it names its own
    ``queue``; ``queue`` (a key) overrides the route of every task that does not.
    Returns the summary; ``on_outcome`` sees each outcome as it happens (for a
    progress bar or a failures file). Nothing is dropped: the summary's total is
    the number of input items.

    Raises:
        TaskValidationError: ``queue`` is not a queue of the stack (nothing is sent).
    """
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be within 1..{MAX_CONCURRENCY}, got {concurrency}")
    if queue is not None:
        enqueuer.outputs.stack_queues.check_key(queue)
    summary = BulkSummary()
    source = items_from(tasks)
    started = time.perf_counter()

    async def worker() -> None:
        # Workers pull from one shared iterator: no read-ahead beyond what is in flight.
        for item in source:
            outcome = await _one(enqueuer, item, queue)
            summary.add(outcome)
            if on_outcome is not None:
                on_outcome(outcome)

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    summary.elapsed = time.perf_counter() - started
    return summary


class FailureWriter:
    """Writes failed outcomes as JSONL.

    Without :meth:`open` the file is created on the first failure. ``open()``
    opens it up front, so a path that cannot be written fails before anything
    is sent; the file is still left as it was (or not created) when nothing
    fails, and replaced by the first failure otherwise.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._stream: IO[str] | None = None
        self._created = False

    def open(self) -> None:
        """Open (create if needed, not truncate) the file now; raises ``OSError``."""
        if self._stream is not None:
            return
        existed = self.path.exists()
        self._stream = self.path.open("a", encoding="utf-8")
        self._created = not existed

    def write(self, outcome: TaskOutcome) -> None:
        if self._stream is None:
            self._stream = self.path.open("w", encoding="utf-8")
        elif self.count == 0:
            # Opened up front without truncating: the first failure replaces the old content.
            self._stream.seek(0)
            self._stream.truncate()
        self._stream.write(json.dumps(outcome.failure_record(), ensure_ascii=False) + "\n")
        self._stream.flush()
        self.count += 1

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
            if self._created and self.count == 0:
                self.path.unlink(missing_ok=True)
