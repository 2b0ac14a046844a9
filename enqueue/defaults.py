"""The enqueue helper's settings and their defaults: transports, the retry policy,
bulk concurrency.

Standard library only, so that `python -m enqueue --help` (which shows these
defaults) starts without loading the Cloud Tasks client, gRPC or rich: operators
run the command in loops and scripts. `enqueue.client` and `enqueue.bulk` use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Transport = Literal["grpc", "rest"]
TRANSPORTS: tuple[Transport, ...] = ("grpc", "rest")

MAX_CONCURRENCY = 1000
DEFAULT_CONCURRENCY = 64


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter for transient errors.

    Attributes:
        initial: first backoff ceiling in seconds (the sleep is uniform in 0..ceiling).
        maximum: largest backoff ceiling in seconds.
        multiplier: growth of the ceiling per attempt.
        deadline: total seconds across all attempts of one create.
        max_attempts: attempts of one create, the first included.
        attempt_timeout: seconds one attempt may take.
    """

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    deadline: float = 60.0
    max_attempts: int = 10
    attempt_timeout: float = 15.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        durations = (self.initial, self.maximum, self.deadline, self.attempt_timeout)
        if not all(math.isfinite(d) and d > 0 for d in durations):
            raise ValueError("RetryPolicy durations must be positive, finite numbers of seconds")
        if not math.isfinite(self.multiplier):
            raise ValueError("RetryPolicy.multiplier must be a finite number")
        if self.multiplier < 1:
            raise ValueError("RetryPolicy.multiplier must be at least 1")
