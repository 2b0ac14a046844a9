"""The retry decision of Cloud Tasks as pure functions: retry at time T, or give up.

Inputs are the effective retry configuration (:class:`RetryPolicy`: the queue's,
field by field overridden by the task's own ``Task.retry_config``), how often
the task was attempted, when it was first attempted, the current time, the
worker's HTTP status (``None`` when no response arrived) and its Retry-After
header; the output is :class:`Succeeded`, :class:`RetryAt` or :class:`GiveUp`.
The rules are those of the ``RetryConfig`` fields of ``google.cloud.tasks.v2``
(queue.proto, https://cloud.google.com/tasks/docs/reference/rpc/google.cloud.tasks.v2#retryconfig).

Deliberately no I/O, no clock and no task state: the dispatcher supplies the
numbers and carries the outcome out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

# A worker's Retry-After is honoured on these statuses only, and at most a day.
RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
MAX_RETRY_AFTER_S: Final = 24 * 3600
# The latest time a google.protobuf.Timestamp holds (9999-12-31T23:59:59Z,
# google/protobuf/timestamp.proto): a valid but huge backoff (max_backoff may be
# any Duration, up to 10,000 years) schedules the retry there, not past it.
MAX_RETRY_AT: Final = 253_402_300_799.0


@dataclass(frozen=True)
class RetryPolicy:
    """A queue's ``RetryConfig`` in seconds; ``max_attempts == -1`` and
    ``max_retry_duration == 0`` mean unlimited, as in queue.proto."""

    max_attempts: int
    max_retry_duration: float
    min_backoff: float
    max_backoff: float
    max_doublings: int

    @classmethod
    def from_pb(cls, rc: Any) -> RetryPolicy:
        """From a ``google.cloud.tasks.v2.RetryConfig`` protobuf (already normalised)."""
        return cls(
            max_attempts=int(rc.max_attempts),
            max_retry_duration=float(rc.max_retry_duration.ToNanoseconds()) / 1e9,
            min_backoff=float(rc.min_backoff.ToNanoseconds()) / 1e9,
            max_backoff=float(rc.max_backoff.ToNanoseconds()) / 1e9,
            max_doublings=int(rc.max_doublings),
        )

    @classmethod
    def for_task(cls, queue_rc: Any, task: Any) -> RetryPolicy:
        """The policy a task is retried by: its queue's ``RetryConfig`` overridden by
        the task's own ``Task.retry_config`` (task.proto: "If present, this overrides
        the Queue.retry_config for this task").

        Field by field, as App Engine's task-level retry options always did: a
        duration the task sets (even ``0s``) wins, and so does a non-zero
        ``max_attempts``/``max_doublings`` (proto3 cannot tell 0 from unset for
        those, and 0 is not a valid value of either); what the task leaves unset
        is the queue's.
        """
        queue = cls.from_pb(queue_rc)
        if not task.HasField("retry_config"):
            return queue
        rc = task.retry_config

        def seconds(field: str, inherited: float) -> float:
            if not rc.HasField(field):
                return inherited
            return float(getattr(rc, field).ToNanoseconds()) / 1e9

        return cls(
            max_attempts=int(rc.max_attempts) or queue.max_attempts,
            max_retry_duration=seconds("max_retry_duration", queue.max_retry_duration),
            min_backoff=seconds("min_backoff", queue.min_backoff),
            max_backoff=seconds("max_backoff", queue.max_backoff),
            max_doublings=int(rc.max_doublings) or queue.max_doublings,
        )


@dataclass(frozen=True)
class Succeeded:
    """A 2xx: the task is done and deleted."""


@dataclass(frozen=True)
class RetryAt:
    at: float  # wall-clock seconds of the next attempt


@dataclass(frozen=True)
class GiveUp:
    attempts: int


Outcome = Succeeded | RetryAt | GiveUp


def retry_delay(
    retry_index: int,
    min_backoff: float,
    max_backoff: float,
    max_doublings: int,
) -> float:
    """Seconds before retry number ``retry_index`` (0 = the first retry).

    RetryConfig.max_doublings: the interval starts at min_backoff, doubles
    max_doublings times, then grows linearly by ``2**max_doublings * min_backoff``
    per retry, and never exceeds max_backoff (10s, 20s, 40s, 80s, 160s, 240s,
    300s, ... for 10s, 300s and 3 doublings).
    """
    if retry_index < 0:
        raise ValueError("retry_index must be >= 0")
    doublings = max(0, max_doublings)
    if retry_index <= doublings:
        # Cap the exponent: 2**retry_index overflows a float long before it matters.
        delay = min_backoff * float(2 ** min(retry_index, 64))
    else:
        step = min_backoff * float(2 ** min(doublings, 64))
        delay = step * (1 + retry_index - doublings)
    return min(delay, max_backoff)


def exhausted(policy: RetryPolicy, attempts: int, first_attempt_at: float, now: float) -> bool:
    """Whether no further attempt is made after ``attempts`` failed ones.

    RetryConfig.max_attempts: "Cloud Tasks stops retrying only when max_attempts
    and max_retry_duration are both satisfied"; an unlimited one (-1, 0 s) is
    never satisfied unless it is the only one set.
    """
    attempts_limited = policy.max_attempts != -1
    duration_limited = policy.max_retry_duration > 0
    attempts_done = attempts_limited and attempts >= policy.max_attempts
    duration_done = duration_limited and now - first_attempt_at >= policy.max_retry_duration
    if attempts_limited and duration_limited:
        return attempts_done and duration_done
    return attempts_done or duration_done


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in delta-seconds (RFC 9110 section 10.2.3); an HTTP date or
    anything unparsable or out of range is ignored."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds <= MAX_RETRY_AFTER_S else None


def decide(
    policy: RetryPolicy,
    *,
    attempts: int,
    first_attempt_at: float,
    now: float,
    status: int | None,
    retry_after: str | None = None,
) -> Outcome:
    """The outcome of attempt number ``attempts`` (1 = the first) answered ``status``.

    ``status`` is None when the worker did not answer (unreachable, deadline
    exceeded). The delay before the next attempt is :func:`retry_delay` of the
    number of retries so far, raised to the worker's Retry-After on a 429 or 503.
    """
    if status is not None and 200 <= status < 300:
        return Succeeded()
    if exhausted(policy, attempts, first_attempt_at, now):
        return GiveUp(attempts)
    delay = retry_delay(
        max(0, attempts - 1), policy.min_backoff, policy.max_backoff, policy.max_doublings
    )
    if status in RETRY_AFTER_STATUSES:
        honoured = parse_retry_after(retry_after)
        if honoured is not None:
            delay = max(delay, honoured)
    return RetryAt(min(now + delay, MAX_RETRY_AT))
