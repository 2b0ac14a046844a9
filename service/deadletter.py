"""Dead letters: tasks that can never succeed, recorded instead of retried.

Every dead letter is logged as one structured ERROR entry holding the whole
task (type, Cloud Tasks headers, body), which is enough to find it in Cloud
Logging and replay it. A team that wants them elsewhere as well (a Firestore
collection, a Pub/Sub topic, a bucket) passes a `DeadLetterSink` to
`create_app`; if that sink raises, the delivery is answered 503 so Cloud Tasks
retries it rather than losing it.

This module deliberately ships no cloud sink: it would pull a client library
into every image for a choice each team makes differently.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

logger = logging.getLogger("service.deadletter")

# Cloud Logging refuses entries above 256 KB; a task body may be up to 1 MiB.
MAX_LOGGED_BODY_CHARS: Final = 200_000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A task that will not be retried, and why."""

    task_type: str
    reason: str
    body: bytes
    headers: Mapping[str, str]
    task_name: str | None
    queue_name: str | None

    def log_fields(self) -> dict[str, Any]:
        text = self.body.decode("utf-8", errors="replace")
        truncated = len(text) > MAX_LOGGED_BODY_CHARS
        return {
            "dead_letter": {
                "reason": self.reason,
                "task_type": self.task_type,
                "task_name": self.task_name,
                "queue_name": self.queue_name,
                "headers": {k: v for k, v in self.headers.items() if k.startswith("x-cloudtasks-")},
                "body": text[:MAX_LOGGED_BODY_CHARS] if truncated else text,
                "body_bytes": len(self.body),
                "body_truncated": truncated,
            }
        }


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
