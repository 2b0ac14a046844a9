"""Is this failing attempt the last one Cloud Tasks will make? Then keep the task.

Cloud Tasks has no dead-letter queue: when a task's retries run out it is deleted
with its body. So when a handler fails (a crash, 500; its timeout, 503; a
`TransientError`) the worker asks `FinalAttempts.decide` whether Cloud Tasks would
try again; if not, the delivery records a dead letter and answers 2xx instead.

What it knows:

- every queue's policy, `{queue key: RetryPolicy}` from `TASKS_RETRY_POLICIES`
  (`contract.retry_policy`), which the program builds from the config that creates
  the queues; the queue key comes from `X-CloudTasks-QueueName` through
  `TASKS_QUEUES` (`{queue key: queue id}`; absent: one queue, key `default`);
- the task's own policy (`Task.retry_config`, task.proto field 12, overrides the
  queue's) when the producer repeats it in `X-Tasks-Retry-Config`: Cloud Tasks does
  not tell the worker, and the enqueue helper sets both;
- attempts made: `X-CloudTasks-TaskRetryCount` + 1 (Cloud Tasks counts attempts
  that got a 5xx or no answer at all in it);
- time since the first attempt, which no header carries. The sound bound is
  `X-Tasks-Not-Before` (the task's schedule or creation time, set by the enqueue
  helper): the first attempt cannot be earlier, so `now - not_before` is never
  shorter than the true elapsed time. `CLOCK_MARGIN_S` is added on top, for the
  producer's clock running ahead and for the moment between this decision and
  Cloud Tasks reading the answer. On the first attempt (retry count 0) the attempt
  itself is the first, so `now - X-CloudTasks-TaskETA` bounds it the same way.

Why not bound it from `X-CloudTasks-TaskETA` and the backoff formula on later
attempts: backoff gives only the *least* time that can have passed (attempts take
time, 429/503 add system backoff, a paused queue waits), so it would underestimate
the elapsed time and let Cloud Tasks delete a task the worker thought had retries
left. Every uncertainty here is resolved toward "this may be the last attempt":
a task recorded one attempt early is kept (and can be replayed); a task recorded
too late is gone. Hence, without `X-Tasks-Not-Before` on a retry of a
duration-limited policy, the duration counts as reached; an unreadable task
policy, or a queue whose policy the worker was not given, counts as exhausted.

A request without `X-CloudTasks-TaskRetryCount` did not come from Cloud Tasks
(a curl, a test): its caller sees the failure itself, so nothing is captured.
With `TASKS_RETRY_POLICIES` unset the worker captures nothing (older stacks).

This module deliberately decides only: it neither records nor answers
(`service.delivery` does), and reads no environment (`service.config` does).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from contract.names import (
    HEADER_ETA,
    HEADER_QUEUE_NAME,
    HEADER_RETRY_COUNT,
    WORKER_ENV_RETRY_POLICIES,
)
from contract.retry_policy import (
    HEADER_NOT_BEFORE,
    HEADER_TASK_RETRY_CONFIG,
    RetryPolicy,
    RetryPolicyError,
    exhausted,
    parse_not_before,
    parse_policies,
)

# Added to every elapsed time: the producer's clock may run ahead of the worker's, and
# Cloud Tasks reads the answer a little after this decision. A task failing within
# this margin of its max_retry_duration is recorded one attempt early, never lost.
CLOCK_MARGIN_S: Final = 30.0


class FinalAttemptConfigError(ValueError):
    """`TASKS_RETRY_POLICIES` cannot be read; says what to fix."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a failing attempt is the last, and why (for the dead letter and the log)."""

    final: bool
    why: str
    queue_key: str | None
    policy: RetryPolicy | None
    attempts: int | None


@dataclass(frozen=True, slots=True)
class FinalAttempts:
    """Every queue's retry policy, by queue key (the delivery knows its key:
    `TaskContext.queue_key`, from `TASKS_QUEUES` through `service.queues`)."""

    policies: Mapping[str, RetryPolicy]

    @classmethod
    def from_env(cls, policies_json: str | None) -> FinalAttempts | None:
        """From `TASKS_RETRY_POLICIES`; None when no policies are given."""
        if policies_json is None:
            return None
        try:
            policies = parse_policies(policies_json, source=WORKER_ENV_RETRY_POLICIES)
        except RetryPolicyError as exc:
            raise FinalAttemptConfigError(str(exc)) from None
        return cls(policies)

    def decide(self, headers: Mapping[str, str], key: str | None, now: float) -> Verdict:
        """Is the failing attempt these headers (lower-case names) describe, on the queue
        whose key is `key` (None: not a queue of the stack), the last?"""
        retry_count = _count(headers.get(HEADER_RETRY_COUNT.lower()))
        if retry_count is None:
            return Verdict(False, "not delivered by Cloud Tasks (no retry count)", key, None, None)
        attempts = retry_count + 1
        own = headers.get(HEADER_TASK_RETRY_CONFIG.lower())
        if own is not None:
            try:
                policy = RetryPolicy.from_json(json.loads(own), where=HEADER_TASK_RETRY_CONFIG)
            except (ValueError, RetryPolicyError) as exc:
                why = f"the task's retry config is unreadable ({exc}): kept to be safe"
                return Verdict(True, why, key, None, attempts)
            source = "the task's retry config"
        else:
            found = self.policies.get(key) if key is not None else None
            if found is None:
                queue = headers.get(HEADER_QUEUE_NAME.lower())
                why = f"no retry policy known for queue {queue!r}: kept to be safe"
                return Verdict(True, why, key, None, attempts)
            policy, source = found, f"queue {key!r}"
        elapsed = _elapsed(headers, retry_count, now)
        if not exhausted(policy, attempts, elapsed):
            return Verdict(False, f"attempt {attempts} of {source}: retried", key, policy, attempts)
        return Verdict(True, _why_final(policy, attempts, elapsed, source), key, policy, attempts)


def _elapsed(headers: Mapping[str, str], retry_count: int, now: float) -> float:
    """Seconds since the first attempt, never under the truth (inf when unknowable)."""
    not_before = parse_not_before(headers.get(HEADER_NOT_BEFORE.lower()))
    if not_before is None and retry_count == 0:
        # The first attempt is this one, dispatched at or after its ETA.
        not_before = parse_not_before(headers.get(HEADER_ETA.lower())) or now
    if not_before is None:
        return math.inf
    return max(0.0, now - not_before) + CLOCK_MARGIN_S


def _why_final(policy: RetryPolicy, attempts: int, elapsed: float, source: str) -> str:
    limit = "unlimited" if policy.max_attempts == -1 else str(policy.max_attempts)
    since = "unknown" if math.isinf(elapsed) else f"at most {elapsed:.0f}s"
    return (
        f"final attempt ({attempts} of {limit} per {source}; first attempt {since} ago, "
        f"max_retry_duration {policy.max_retry_duration:g}s)"
    )


def _count(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())
