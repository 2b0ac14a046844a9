"""The two exceptions a handler raises to tell Cloud Tasks what to do next.

Cloud Tasks retries every answer that is not 2xx, so the whole retry policy of
a task type is expressed by which of these a handler raises:

* `TransientError`: try again later (backend down, timeout, rate limited).
  Answered 503 by default, 429 or 500 on request, with `Retry-After` when the
  handler knows how long to back off.
* `PermanentError`: this task can never succeed (bad data, missing record).
  Recorded as a dead letter and acknowledged with 200 so it is not retried.

Any other exception is treated as transient (500): a bug fixed by the next
deploy should not lose the task. This module deliberately has no HTTP or
framework imports; handlers depend on it and nothing else from the worker.
"""

from __future__ import annotations

import math
from typing import Final

# 503 and 429 make Cloud Tasks slow the whole queue down (system backoff), which is
# right when a shared backend is struggling; 500 retries on the queue's own schedule.
TRANSIENT_STATUSES: Final = frozenset({429, 500, 502, 503, 504})


class TransientError(Exception):
    """The task may succeed if retried later; Cloud Tasks will retry it.

    Args:
        message: why it failed; logged, never sent to the caller.
        retry_after: seconds the caller should wait, sent as `Retry-After`
            (rounded up to whole seconds, as the header requires).
        status: HTTP status to answer, one of 429, 500, 502, 503, 504.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int = 503
    ) -> None:
        if status not in TRANSIENT_STATUSES:
            raise ValueError(
                f"TransientError status {status} is not a retryable status: "
                f"use one of {sorted(TRANSIENT_STATUSES)}"
            )
        if retry_after is not None and not (retry_after >= 0 and math.isfinite(retry_after)):
            raise ValueError(
                f"TransientError retry_after={retry_after!r} must be a finite number of "
                "seconds >= 0, or None to let the queue's retry config decide"
            )
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.status = status

    @property
    def retry_after_header(self) -> str | None:
        """The `Retry-After` header value (delta-seconds), or None."""
        if self.retry_after is None:
            return None
        return str(math.ceil(self.retry_after))


class PermanentError(Exception):
    """The task can never succeed; it is dead-lettered and acknowledged.

    Args:
        message: why; goes into the dead-letter log entry and the sink.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
