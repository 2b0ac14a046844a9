"""Dropped tasks: the ones Cloud Tasks deletes because their retries ran out.

A task whose last permitted attempt failed (the worker answered non-2xx, was
unreachable, refused the token with 401/403, or did not answer within the
dispatch deadline) is deleted with its body, as on Google. So that this never
happens silently, :class:`DropLedger` writes one structured log line per dropped
task (logger ``emulator.dropped``, WARNING, the message a JSON object with
``event: "task_dropped"``, the queue, the task, attempts, the last HTTP status
or null, the last error), counts drops per queue, and keeps the latest
:data:`RECENT` records for ``GET /emulator/v1/dropped``.

The counts survive restarts with ``--data`` (one ``meta`` row); the recent
records live in memory only. It deliberately decides nothing: the dispatcher
calls :meth:`DropLedger.record` when the retry decision is to give up.
"""

from __future__ import annotations

import collections
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any, Final

from emulator.store import Store

log = logging.getLogger("emulator.dropped")

RECENT: Final = 100
_META_KEY: Final = "dropped_tasks"


@dataclass(frozen=True)
class DroppedTask:
    queue: str  # full queue name
    task: str  # full task name
    attempts: int
    last_status: int | None  # the worker's HTTP status, None when it never answered
    last_error: str  # e.g. "HTTP 503 Service Unavailable", "Could not reach ..."
    first_attempt_at: float | None  # seconds since the epoch
    dropped_at: float


class DropLedger:
    """Per-queue counts and recent records of dropped tasks, persisted when there is a store."""

    def __init__(self, store: Store | None) -> None:
        self.store = store
        self.counts: dict[str, int] = {}
        self.recent: collections.deque[DroppedTask] = collections.deque(maxlen=RECENT)

    def load(self) -> None:
        """Read the stored counts; an unreadable row is logged and starts from zero."""
        if self.store is None:
            return
        raw = self.store.get_meta(_META_KEY)
        if raw is None:
            return
        try:
            counts = json.loads(raw)
            if not isinstance(counts, dict) or not all(
                isinstance(k, str) and isinstance(v, int) for k, v in counts.items()
            ):
                raise ValueError("not an object of queue names to counts")
        except ValueError as exc:
            log.warning(
                "the dropped-task counts in %s are unreadable (%s); counting from zero",
                self.store.path,
                exc,
            )
            return
        self.counts = counts

    def record(self, drop: DroppedTask) -> None:
        self.counts[drop.queue] = self.counts.get(drop.queue, 0) + 1
        self.recent.append(drop)
        log.warning(json.dumps({"event": "task_dropped", **asdict(drop)}, sort_keys=True))
        self._save()

    def total(self) -> int:
        return sum(self.counts.values())

    def report(self, queue: str | None = None) -> dict[str, Any]:
        """The admin endpoint's answer: counts per queue, their total, recent records."""
        counts = self.counts if queue is None else {queue: self.counts.get(queue, 0)}
        recent = [asdict(d) for d in self.recent if queue is None or d.queue == queue]
        return {"total": sum(counts.values()), "queues": dict(counts), "recent": recent}

    def reset(self) -> int:
        total = self.total()
        self.counts.clear()
        self.recent.clear()
        self._save()
        return total

    def _save(self) -> None:
        if self.store is not None:
            self.store.put_meta(_META_KEY, json.dumps(self.counts, sort_keys=True).encode())
