"""The pure retry decision (emulator/retry.py) as tables: limits, backoff, Retry-After.

Rows follow the RetryConfig field docs of google.cloud.tasks.v2 (queue.proto):
Cloud Tasks gives up only when BOTH max_attempts and max_retry_duration are
reached (-1 attempts and 0 s duration meaning unlimited), and the interval
starts at min_backoff, doubles max_doublings times, then grows linearly,
never above max_backoff.
"""

from __future__ import annotations

import pytest

from emulator.retry import (
    GiveUp,
    Outcome,
    RetryAt,
    RetryPolicy,
    Succeeded,
    decide,
    parse_retry_after,
    retry_delay,
)

T0 = 1_000_000.0


def _policy(
    max_attempts: int = 100,
    max_retry_duration: float = 0.0,
    min_backoff: float = 1.0,
    max_backoff: float = 3600.0,
    max_doublings: int = 16,
) -> RetryPolicy:
    return RetryPolicy(max_attempts, max_retry_duration, min_backoff, max_backoff, max_doublings)


@pytest.mark.parametrize(
    ("max_attempts", "max_duration", "attempts", "elapsed", "gives_up"),
    [
        # Both limits set: give up only when both are reached.
        (2, 3.0, 2, 2.0, False),  # attempts reached, duration not
        (2, 3.0, 1, 5.0, False),  # duration reached, attempts not
        (2, 3.0, 2, 3.0, True),  # both reached, exactly
        (2, 3.0, 4, 10.0, True),
        # Only max_attempts (max_retry_duration 0 = unlimited).
        (3, 0.0, 2, 999.0, False),
        (3, 0.0, 3, 0.0, True),
        # Only max_retry_duration (max_attempts -1 = unlimited).
        (-1, 2.0, 50, 1.9, False),
        (-1, 2.0, 1, 2.0, True),
        # Neither: retried forever.
        (-1, 0.0, 10_000, 10**7, False),
        # max_attempts 1: the first failure is final when no duration is set.
        (1, 0.0, 1, 0.0, True),
        (1, 60.0, 1, 0.0, False),
    ],
)
def test_both_limits_rule(
    max_attempts: int, max_duration: float, attempts: int, elapsed: float, gives_up: bool
) -> None:
    policy = _policy(max_attempts=max_attempts, max_retry_duration=max_duration)
    outcome = decide(policy, attempts=attempts, first_attempt_at=T0, now=T0 + elapsed, status=500)
    assert isinstance(outcome, GiveUp) is gives_up
    if not gives_up:
        assert isinstance(outcome, RetryAt)


@pytest.mark.parametrize(
    ("min_backoff", "max_backoff", "max_doublings", "delays"),
    [
        # queue.proto's example: 10s, 300s, 3 doublings.
        (10, 300, 3, [10, 20, 40, 80, 160, 240, 300, 300]),
        # No doublings: linear from the start.
        (2, 100, 0, [2, 4, 6, 8, 10]),
        # One doubling, capped by max_backoff at once.
        (1, 2, 1, [1, 2, 2, 2]),
        # min_backoff == max_backoff: constant.
        (5, 5, 16, [5, 5, 5, 5]),
        # Google's defaults: 0.1 s doubling 16 times, capped at an hour.
        (0.1, 3600, 16, [0.1, 0.2, 0.4, 0.8, 1.6, 3.2]),
        # Two doublings then +4 s per retry, capped at 10 s.
        (1, 10, 2, [1, 2, 4, 8, 10, 10]),
    ],
)
def test_backoff_table(
    min_backoff: float, max_backoff: float, max_doublings: int, delays: list[float]
) -> None:
    got = [retry_delay(i, min_backoff, max_backoff, max_doublings) for i in range(len(delays))]
    assert got == pytest.approx(delays)
    # decide() uses the same spacing: attempt n fails -> retry n - 1's delay.
    policy = _policy(
        max_attempts=-1,
        min_backoff=min_backoff,
        max_backoff=max_backoff,
        max_doublings=max_doublings,
    )
    for attempts, delay in enumerate(delays, start=1):
        outcome = decide(policy, attempts=attempts, first_attempt_at=T0, now=T0, status=500)
        assert isinstance(outcome, RetryAt)
        assert outcome.at == pytest.approx(T0 + delay)


def test_retry_delay_never_overflows_with_many_doublings() -> None:
    assert retry_delay(10_000, 1, 3600, 16) == 3600


def test_retry_delay_rejects_a_negative_index() -> None:
    with pytest.raises(ValueError, match="retry_index"):
        retry_delay(-1, 1, 2, 3)


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (200, None, Succeeded()),
        (204, "5", Succeeded()),
        (299, None, Succeeded()),
        (500, None, RetryAt(T0 + 1)),
        (404, None, RetryAt(T0 + 1)),
        (None, None, RetryAt(T0 + 1)),  # no answer (unreachable, deadline)
        (429, "2", RetryAt(T0 + 2)),  # Retry-After raises the delay...
        (503, "7.5", RetryAt(T0 + 7.5)),
        (429, "0.5", RetryAt(T0 + 1)),  # ...but never lowers it
        (500, "30", RetryAt(T0 + 1)),  # only 429 and 503 carry it
        (429, "Wed, 21 Oct 2015 07:28:00 GMT", RetryAt(T0 + 1)),  # HTTP dates ignored
        (429, "-3", RetryAt(T0 + 1)),
        (429, str(10 * 86400), RetryAt(T0 + 1)),  # more than a day: ignored
    ],
)
def test_status_and_retry_after(
    status: int | None, retry_after: str | None, expected: Outcome
) -> None:
    policy = _policy(min_backoff=1, max_backoff=1)
    outcome = decide(
        policy, attempts=1, first_attempt_at=T0, now=T0, status=status, retry_after=retry_after
    )
    assert outcome == expected


def test_success_wins_over_exhausted_limits() -> None:
    policy = _policy(max_attempts=1)
    assert decide(policy, attempts=5, first_attempt_at=T0, now=T0, status=200) == Succeeded()
    assert decide(policy, attempts=5, first_attempt_at=T0, now=T0, status=500) == GiveUp(5)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, None), ("", None), ("3", 3.0), ("1.5", 1.5), ("abc", None), ("86400", 86400.0)],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds
