"""A queue's retry policy as the program, the local stack and the worker share it.

Cloud Tasks deletes a task whose retries ran out, body and all, and tells nobody.
The worker can only keep such a task if it knows, on each failing attempt, whether
Cloud Tasks will try again; so the program hands it every queue's policy (env
`TASKS_RETRY_POLICIES`, `contract.names.WORKER_ENV_RETRY_POLICIES`) built from the
same config that creates the queues, as JSON::

    {"default": {"max_attempts": 3, "min_backoff": "1s", "max_backoff": "300s",
                 "max_doublings": 5, "max_retry_duration": "0s"}}

Durations are printed by `contract.durations.format_duration` (protobuf JSON form).

Two request headers complete what `X-CloudTasks-*` lacks (the enqueue helper sets
both; any producer may):

- `X-Tasks-Not-Before` (`HEADER_NOT_BEFORE`): seconds since the epoch before which
  the task cannot have been attempted (its schedule time, or its creation time).
  Cloud Tasks measures `max_retry_duration` from the first attempt, which no header
  carries; this bound is never later than that attempt, so the elapsed time the
  worker derives from it is never shorter than the true one.
- `X-Tasks-Retry-Config` (`HEADER_TASK_RETRY_CONFIG`): the task's own
  `Task.retry_config` (task.proto field 12, google-cloud-tasks >= 2.26), one policy
  in the JSON shape above, when the task carries one: it overrides the queue's.

`exhausted` is the rule of `RetryConfig` (google/cloud/tasks/v2/queue.proto): Cloud
Tasks stops only when BOTH `max_attempts` and `max_retry_duration` are reached; when
one of them is unlimited (-1, 0 s) the other alone decides, and with both unlimited
it never gives up (task retention ends it). The emulator applies the same rule in
`emulator/retry.py`, written before this module existed.

This module deliberately holds no I/O and no clock: callers pass the numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from contract.durations import DurationError, format_duration, parse_duration_s

HEADER_NOT_BEFORE: Final = "X-Tasks-Not-Before"
HEADER_TASK_RETRY_CONFIG: Final = "X-Tasks-Retry-Config"

POLICY_FIELDS: Final = (
    "max_attempts",
    "min_backoff",
    "max_backoff",
    "max_doublings",
    "max_retry_duration",
)


class RetryPolicyError(ValueError):
    """A retry policy (or the JSON map of them) that cannot be read; says what to fix."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """One `RetryConfig` in seconds; `max_attempts == -1` and `max_retry_duration == 0`
    mean unlimited, as in queue.proto."""

    max_attempts: int
    min_backoff: float
    max_backoff: float
    max_doublings: int
    max_retry_duration: float

    def to_json(self) -> dict[str, Any]:
        """The JSON object of one policy (durations as "600s")."""
        return {
            "max_attempts": self.max_attempts,
            "min_backoff": format_duration(self.min_backoff),
            "max_backoff": format_duration(self.max_backoff),
            "max_doublings": self.max_doublings,
            "max_retry_duration": format_duration(self.max_retry_duration),
        }

    @classmethod
    def from_json(cls, value: object, *, where: str) -> RetryPolicy:
        """One policy from its JSON object; `where` names it in the error."""
        if not isinstance(value, Mapping):
            raise RetryPolicyError(
                f"{where}: expected a JSON object with {', '.join(POLICY_FIELDS)}"
            )
        missing = [f for f in POLICY_FIELDS if f not in value]
        unknown = sorted(set(value) - set(POLICY_FIELDS))
        if missing or unknown:
            problem = (
                f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(unknown)}"
            )
            raise RetryPolicyError(f"{where}: {problem}; give exactly {', '.join(POLICY_FIELDS)}")
        attempts, doublings = value["max_attempts"], value["max_doublings"]
        if not _is_int(attempts) or attempts < -1:
            raise RetryPolicyError(f"{where}.max_attempts: give an integer >= -1, got {attempts!r}")
        if not _is_int(doublings) or doublings < 0:
            raise RetryPolicyError(
                f"{where}.max_doublings: give an integer >= 0, got {doublings!r}"
            )
        try:
            durations = {
                f: parse_duration_s(value[f], what=f"{where}.{f}")
                for f in ("min_backoff", "max_backoff", "max_retry_duration")
            }
        except DurationError as exc:
            raise RetryPolicyError(str(exc)) from None
        return cls(max_attempts=attempts, max_doublings=doublings, **durations)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def dump_policies(policies: Mapping[str, RetryPolicy]) -> str:
    """The `TASKS_RETRY_POLICIES` value: compact JSON, keys sorted (stable in plans)."""
    return json.dumps(
        {key: policies[key].to_json() for key in sorted(policies)}, separators=(",", ":")
    )


def parse_policies(text: str, *, source: str) -> dict[str, RetryPolicy]:
    """`{queue key: policy}` from `TASKS_RETRY_POLICIES`; `source` names the variable."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise RetryPolicyError(
            f"{source} is not JSON ({exc}); give an object like "
            '{"default": {"max_attempts": 3, "min_backoff": "1s", "max_backoff": "300s", '
            '"max_doublings": 5, "max_retry_duration": "0s"}}'
        ) from None
    if not isinstance(raw, dict) or not raw:
        raise RetryPolicyError(f"{source}: give a non-empty JSON object {{queue key: policy}}")
    return {
        str(key): RetryPolicy.from_json(value, where=f"{source}[{key}]")
        for key, value in raw.items()
    }


def exhausted(policy: RetryPolicy, attempts: int, elapsed_s: float) -> bool:
    """Whether Cloud Tasks makes no further attempt after `attempts` failed ones,
    `elapsed_s` after the first attempt (queue.proto, `RetryConfig.max_attempts`)."""
    attempts_limited = policy.max_attempts != -1
    duration_limited = policy.max_retry_duration > 0
    attempts_done = attempts_limited and attempts >= policy.max_attempts
    duration_done = duration_limited and elapsed_s >= policy.max_retry_duration
    if attempts_limited and duration_limited:
        return attempts_done and duration_done
    return attempts_done or duration_done


def not_before_header(when: datetime) -> str:
    """`X-Tasks-Not-Before` for a task first attempted no earlier than `when`: whole
    seconds, rounded down (never later than `when`)."""
    return str(math.floor(when.timestamp()))


def parse_not_before(value: str | None) -> float | None:
    """`X-Tasks-Not-Before` in seconds since the epoch; None when absent or unreadable."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
