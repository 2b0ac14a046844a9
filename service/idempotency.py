"""Run each task's handler once, although Cloud Tasks delivers at least once.

The key is `queue/task` (task names are unique within a queue). A delivery
first *claims* its key:

* `CLAIMED`: nobody has it; run the handler, then `complete` (success or
  dead letter) or `release` (transient failure, so the retry can run).
* `IN_PROGRESS`: another delivery of the same task is running right now; the
  worker answers 409 with `Retry-After` so Cloud Tasks asks again later, when
  the first one has finished (a 2xx here could acknowledge a task whose only
  real attempt then fails).
* `DONE`: it already succeeded or was dead-lettered; acknowledge again
  without running anything.

`IdempotencyStore` is the interface a team backs with Firestore or Redis
(claim = a create-if-absent with a lease, e.g. `SET key NX PX lease`). The
default `InMemoryIdempotencyStore` is per process and bounded (LRU + TTL):
it deliberately does not coordinate instances, and it forgets on restart, so
across instances it narrows the duplicate window rather than closing it.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class ClaimState(enum.Enum):
    CLAIMED = "claimed"
    IN_PROGRESS = "in_progress"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Completion:
    """How a finished task ended, remembered to answer its duplicates."""

    status: int
    outcome: str  # "ok" or "dead_letter"


@dataclass(frozen=True, slots=True)
class Claim:
    state: ClaimState
    completion: Completion | None = None


class IdempotencyStore(Protocol):
    """Claim/complete/release by key; implementations must make `claim` atomic."""

    async def claim(self, key: str, *, lease_s: float) -> Claim:
        """Take `key` for `lease_s` seconds unless it is taken or done."""
        ...

    async def complete(self, key: str, completion: Completion) -> None:
        """Mark `key` done (kept for the store's TTL)."""
        ...

    async def release(self, key: str) -> None:
        """Forget an unfinished claim so a retry can take it."""
        ...


@dataclass(slots=True)
class _Entry:
    expires_at: float
    completion: Completion | None  # None while in progress


class InMemoryIdempotencyStore:
    """A bounded LRU of keys with a TTL for finished ones and a lease for running ones.

    All methods run on the event loop without awaiting, so each is atomic
    without a lock.
    """

    def __init__(
        self,
        *,
        max_entries: int = 100_000,
        ttl_s: float = 24 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries={max_entries} must be >= 1")
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    async def claim(self, key: str, *, lease_s: float) -> Claim:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at > now:
            if entry.completion is not None:
                self._entries.move_to_end(key)
                return Claim(ClaimState.DONE, entry.completion)
            return Claim(ClaimState.IN_PROGRESS)
        self._entries[key] = _Entry(expires_at=now + lease_s, completion=None)
        self._entries.move_to_end(key)
        self._evict()
        return Claim(ClaimState.CLAIMED)

    async def complete(self, key: str, completion: Completion) -> None:
        self._entries[key] = _Entry(expires_at=self._clock() + self._ttl_s, completion=completion)
        self._entries.move_to_end(key)
        self._evict()

    async def release(self, key: str) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.completion is None:
            del self._entries[key]

    def _evict(self) -> None:
        # Oldest first: a finished key nobody asked about for longest goes first.
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
