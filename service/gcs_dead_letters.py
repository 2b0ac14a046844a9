"""Dead letters kept whole in a Cloud Storage bucket: one JSON object per dead task.

`GcsDeadLetterSink` is the `DeadLetterSink` the worker uses when
`TASKS_DEAD_LETTER_BUCKET` names a bucket (the program declares it, the local stack
serves one from a Cloud Storage emulator and sets `STORAGE_EMULATOR_HOST`, which
the official `google-cloud-storage` client honours). Each record
(`dead_letter_record`) holds the whole body (up to the 1 MiB task limit, never cut;
base64 when it is not UTF-8), the request headers without credentials, the task
and queue names, the task type, what the worker knows of every attempt (the
previous attempt's status from `X-CloudTasks-TaskPreviousResponse`, this one's,
the retry and execution counts), the effective retry policy and the last error.

The object name is `<queue id>/<task id>.json` (`object_name`), deterministic, so a
redelivered last attempt does not make a second record. The upload is create-only
(`if_generation_match=0`): the runtime account holds `roles/storage.objectCreator`,
which cannot replace an object, and a 412 means the record is already there, so it
counts as written. Any other failure raises, and the delivery answers 503 so Cloud
Tasks retries rather than losing the task. Every record gets one log entry naming
`gs://bucket/object` (`dead_letter_uri`), next to the ERROR entry of the dead letter.

The client library is imported when the sink is built, not with this module: it
costs most of a second and only workers with a bucket need it. This module
deliberately does not read, list or delete dead letters (operators do, with their
own `roles/storage.objectViewer`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from pydantic_core import to_json

from contract.names import (
    HEADER_ETA,
    HEADER_EXECUTION_COUNT,
    HEADER_PREVIOUS_RESPONSE,
    HEADER_RETRY_COUNT,
    HEADER_RETRY_REASON,
)
from service.deadletter import DeadLetter

logger = logging.getLogger("service.deadletter")

RECORD_FORMAT: Final = 1
CONTENT_TYPE: Final = "application/json"
# Each request, and all the client's retries of one write together: a dead letter must
# be written (or the delivery answered 503) well within the shortest dispatch deadline
# (15 s), or Cloud Tasks counts the attempt as failed without an answer, which on the
# last attempt would lose the task. The client's default retry runs for 120 s.
UPLOAD_TIMEOUT_S: Final = 5.0
UPLOAD_RETRY_BUDGET_S: Final = 8.0
# Queue ids and task ids as Cloud Tasks allows them (queue.proto, task.proto); anything
# else (a hand-made request) is hashed so the name stays a safe, deterministic path.
_SAFE_SEGMENT: Final = re.compile(r"^[A-Za-z0-9_-]{1,500}$")


def object_name(letter: DeadLetter) -> str:
    """`<queue id>/<task id>.json`; a task without a name is named by its content."""
    queue = _segment(letter.queue_name or "_no-queue")
    if letter.task_name:
        task = _segment(letter.task_name)
    else:
        digest = hashlib.sha256(letter.task_type.encode() + b"\n" + letter.body).hexdigest()
        task = f"_unnamed-{digest[:32]}"
    return f"{queue}/{task}.json"


def _segment(value: str) -> str:
    if _SAFE_SEGMENT.match(value):
        return value
    return "_h-" + hashlib.sha256(value.encode()).hexdigest()[:32]


def _int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name.lower(), "").strip()
    return int(value) if value.isdigit() else None


def dead_letter_record(letter: DeadLetter, *, recorded_at: datetime) -> dict[str, Any]:
    """The JSON object stored for `letter` (see the module docstring)."""
    try:
        body, encoding = letter.body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(letter.body).decode("ascii"), "base64"
    headers = letter.headers
    retry_count = _int(headers, HEADER_RETRY_COUNT)
    attempt = None if retry_count is None else retry_count + 1
    statuses: list[dict[str, Any]] = []
    previous = _int(headers, HEADER_PREVIOUS_RESPONSE)
    if attempt is not None and attempt > 1:
        statuses.append({"attempt": attempt - 1, "status": previous})
    statuses.append({"attempt": attempt, "status": letter.last_status})
    return {
        "format": RECORD_FORMAT,
        "recorded_at": recorded_at.isoformat(),
        "kind": letter.kind,
        "last_error": letter.reason,
        "task_type": letter.task_type,
        "task_name": letter.task_name,
        "queue": {"key": letter.queue_key, "id": letter.queue_name},
        "attempts": {
            "made": attempt,
            "retry_count": retry_count,
            "execution_count": _int(headers, HEADER_EXECUTION_COUNT),
            "previous_response": previous,
            "retry_reason": headers.get(HEADER_RETRY_REASON.lower()),
            "eta": headers.get(HEADER_ETA.lower()),
            "statuses": statuses,
        },
        "retry_policy": dict(letter.retry_policy) if letter.retry_policy is not None else None,
        "headers": dict(letter.headers),
        "body": body,
        "body_encoding": encoding,
        "body_bytes": len(letter.body),
    }


class GcsDeadLetterSink:
    """Writes each dead letter to `gs://<bucket>/<queue id>/<task id>.json`, create-only."""

    def __init__(self, bucket: str, *, project: str | None = None) -> None:
        # Imported here: the client costs most of a second, and only workers with a bucket.
        from google.cloud.storage import Client

        self.bucket_name = bucket
        self._bucket = Client(project=project).bucket(bucket)

    def uri(self, name: str) -> str:
        return f"gs://{self.bucket_name}/{name}"

    async def record(self, letter: DeadLetter) -> None:
        name = object_name(letter)
        data = to_json(dead_letter_record(letter, recorded_at=datetime.now(UTC)))
        created = await asyncio.to_thread(self._create, name, data)
        logger.info(
            "dead letter %s at %s",
            "stored" if created else "already stored",
            self.uri(name),
            extra={"fields": {"dead_letter_uri": self.uri(name), "body_bytes": len(letter.body)}},
        )

    def _create(self, name: str, data: bytes) -> bool:
        """Upload unless the object exists; False when it did (a redelivered last attempt)."""
        from google.api_core.exceptions import PreconditionFailed
        from google.cloud.storage.retry import DEFAULT_RETRY

        try:
            self._bucket.blob(name).upload_from_string(
                data,
                content_type=CONTENT_TYPE,
                if_generation_match=0,
                timeout=UPLOAD_TIMEOUT_S,
                retry=DEFAULT_RETRY.with_timeout(UPLOAD_RETRY_BUDGET_S),
            )
        except PreconditionFailed:
            return False
        return True
