"""Dead letters: tasks that can never succeed, or failed on their last attempt,
recorded instead of retried or dropped.

Every dead letter is logged as one structured ERROR entry holding the task
(type, kind, Cloud Tasks headers, body cut to what a log entry holds), which is
enough to find it in Cloud Logging. The whole task goes to a `DeadLetterSink`:
the Cloud Storage bucket of `TASKS_DEAD_LETTER_BUCKET` (`service.gcs_dead_letters`)
and/or a team's own (`TASKS_DEAD_LETTER_SINK`, or `create_app(dead_letter_sink=)`);
if a sink raises, the delivery is answered 503 so Cloud Tasks retries it rather
than losing it.

This module deliberately holds only the record and the log entry; writing it
anywhere is a sink's job.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from pydantic_core import to_json

logger = logging.getLogger("service.deadletter")

# Cloud Logging refuses entries above 256 KB and a task body may be up to 1 MiB, so
# the body is cut to this many bytes *as it appears in the JSON line* (escapes
# included: a control character takes 6), leaving room for the rest of the entry.
MAX_LOGGED_BODY_BYTES: Final = 128_000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A task that will not be retried, and why."""

    task_type: str
    reason: str
    body: bytes
    headers: Mapping[str, str]
    task_name: str | None
    queue_name: str | None
    kind: str = "permanent"
    """`permanent` (the task can never succeed) or `final_attempt` (retries ran out)."""
    queue_key: str | None = None
    last_status: int | None = None
    """The status this attempt would have answered (`final_attempt` only)."""
    retry_policy: Mapping[str, Any] | None = None
    """The effective retry policy (`contract.retry_policy` JSON), when known."""

    def log_fields(self) -> dict[str, Any]:
        body, encoding, truncated = logged_body(self.body)
        return {
            "dead_letter": {
                "reason": self.reason,
                "kind": self.kind,
                "task_type": self.task_type,
                "task_name": self.task_name,
                "queue_name": self.queue_name,
                "headers": {k: v for k, v in self.headers.items() if k.startswith("x-cloudtasks-")},
                "body": body,
                "body_encoding": encoding,
                "body_bytes": len(self.body),
                "body_truncated": truncated,
            }
        }


def logged_body(body: bytes, limit: int = MAX_LOGGED_BODY_BYTES) -> tuple[str, str, bool]:
    """The body as logged: (text, "utf-8" or "base64", truncated).

    UTF-8 bodies are logged as text, anything else as base64, so the entry can
    always be turned back into the exact bytes (when not truncated) to replay it.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        # 4 base64 characters per 3 bytes, none of them escaped in JSON.
        kept = body[: limit // 4 * 3]
        return base64.b64encode(kept).decode("ascii"), "base64", len(kept) < len(body)
    size = _json_size(text)
    if size <= limit:
        return text, "utf-8", False
    keep = len(text)
    while size > limit:
        # Shrink in proportion to the overshoot; converges in a few steps.
        keep = max(0, keep * limit // size - 1)
        size = _json_size(text[:keep])
    return text[:keep], "utf-8", True


def _json_size(text: str) -> int:
    return len(to_json(text)) - 2  # without the quotes


class DeadLetterSink(Protocol):
    """Somewhere else to keep dead letters; `record` must be idempotent."""

    async def record(self, letter: DeadLetter) -> None: ...


def log_dead_letter(letter: DeadLetter) -> None:
    """The one ERROR entry every dead letter gets, whatever the sink."""
    logger.error(
        "dead letter: %s task %s: %s",
        letter.task_type,
        letter.task_name or "(unnamed)",
        letter.reason,
        extra={"fields": letter.log_fields()},
    )
