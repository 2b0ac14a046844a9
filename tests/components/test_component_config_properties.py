"""Property tests of the config rules: over generated values, a value is accepted
exactly when it is inside the range Cloud Tasks / Cloud Run document, the oracle
here being the documented range, not the validator's code:

- rate limits: https://cloud.google.com/tasks/docs/configuring-queues (at most 500
  dispatches per second and 5000 concurrent dispatches per queue);
- dispatch deadline: `HttpRequest.dispatch_deadline`, google/cloud/tasks/v2/task.proto
  (15 seconds to 30 minutes);
- request timeout: https://cloud.google.com/run/docs/configuring/request-timeout
  (at most 60 minutes);
- instances: https://cloud.google.com/run/docs/configuring/max-instances.
"""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from components.config import ConfigError, PipelineConfig
from components.loading import parse_config
from contract.durations import format_duration

BASE = {"project": "my-tasks-dev", "region": "europe-west1"}
FAST = settings(max_examples=150, deadline=None)


def accepted(**fields: object) -> PipelineConfig | None:
    try:
        return parse_config({**BASE, **fields})
    except ConfigError:
        return None


@FAST
@given(st.floats(min_value=-10, max_value=1000, allow_nan=False))
def test_dispatch_rate_range(rate: float) -> None:
    config = accepted(max_dispatches_per_second=str(rate))
    assert (config is not None) == (0 < rate <= 500)
    if config is not None:
        assert config.queue.max_dispatches_per_second == rate


@FAST
@given(st.integers(min_value=-10, max_value=10_000))
def test_concurrency_range(concurrency: int) -> None:
    assert (accepted(max_concurrent_dispatches=str(concurrency)) is not None) == (
        1 <= concurrency <= 5000
    )


@FAST
@given(st.integers(min_value=0, max_value=7200), st.integers(min_value=0, max_value=7200))
def test_backoff_order(low: int, high: int) -> None:
    config = accepted(min_backoff=f"{low}s", max_backoff=f"{high}s")
    assert (config is not None) == (low <= high)


@FAST
@given(st.integers(min_value=1, max_value=4000), st.integers(min_value=1, max_value=4000))
def test_deadline_and_timeout(deadline: int, timeout: int) -> None:
    config = accepted(dispatch_deadline=f"{deadline}s", request_timeout=f"{timeout}s")
    valid = 15 <= deadline <= 1800 and deadline <= timeout <= 3600
    assert (config is not None) == valid


@FAST
@given(st.integers(min_value=0, max_value=60), st.sampled_from(["m", "h"]))
def test_minutes_and_hours_are_whole_seconds(amount: int, unit: str) -> None:
    config = accepted(max_retry_duration=f"{amount}{unit}")
    assert config is not None
    seconds = amount * {"m": 60, "h": 3600}[unit]
    assert format_duration(config.queue.max_retry_duration) == f"{seconds}s"


@FAST
@given(st.integers(min_value=0, max_value=1200), st.integers(min_value=0, max_value=1200))
def test_scaling_order(low: int, high: int) -> None:
    config = accepted(min_instances=str(low), max_instances=str(high))
    assert (config is not None) == (low <= high and 1 <= high <= 1000)
