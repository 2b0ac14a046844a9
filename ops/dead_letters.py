"""Dead letters as the worker stores them, read back from the Cloud Storage bucket.

The one place that knows the record format: the worker (`service.gcs_dead_letters`
on the dead-letters branch) writes one JSON object per dead task, format 1, named
`<queue id>/<task id>.json` in the bucket of the stack output `dead_letter_bucket`::

    {"format": 1, "recorded_at": "...", "kind": "final_attempt" | "permanent",
     "last_error": "...", "task_type": "email", "task_name": "t-123",
     "queue": {"key": "default", "id": "jobs-abc"},
     "attempts": {"made": 3, "statuses": [{"attempt": 2, "status": 503}, ...], ...},
     "retry_policy": {...} | null, "headers": {"content-type": ...},
     "body": "<utf-8 text or base64>", "body_encoding": "utf-8" | "base64",
     "body_bytes": 15}

A dead letter's id is its object name without `.json` (`jobs-abc/t-123`). Reading goes
through the official `google-cloud-storage` client: Google's API with Application
Default Credentials, or the local emulator named by `STORAGE_EMULATOR_HOST` (wins) or
the outputs' `storage_emulator_host`. The client is imported when a command needs it.

This module deliberately does not write, replace or delete dead letters: operators
hold `roles/storage.objectViewer` only, and the records are kept for the bucket's
retention. Replaying them is `ops.replay`'s job.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from contract.names import OUTPUT_DEAD_LETTER_BUCKET
from contract.resources import STORAGE_OBJECT_VIEWER_ROLE
from enqueue.errors import ClientSetupError, EnqueueFailedError, NotFoundError, OutputsError
from enqueue.outputs import StackOutputs

if TYPE_CHECKING:
    from google.cloud.storage import Bucket

RECORD_FORMAT: Final = 1
OBJECT_SUFFIX: Final = ".json"
STORAGE_EMULATOR_HOST_ENV: Final = "STORAGE_EMULATOR_HOST"  # read by google-cloud-storage
# A record is at most the 1 MiB body as base64 plus headers: a bigger object is not one.
MAX_RECORD_BYTES: Final = 4 * 1024 * 1024
READ_TIMEOUT_S: Final = 10.0  # one request
# All the client's retries of one read together (its default runs for 120 s): an operator
# waiting on an unreachable bucket is told so within this.
READ_RETRY_BUDGET_S = 20.0


class BadRecordError(Exception):
    """An object in the bucket that is not a dead letter this reader understands."""


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """One dead letter: its id (object name without `.json`) and what the worker stored."""

    id: str
    task_type: str
    body: bytes
    headers: Mapping[str, str]
    task_name: str | None
    queue_key: str | None
    queue_id: str | None
    kind: str
    last_error: str
    recorded_at: str | None
    attempts: Mapping[str, Any] = field(default_factory=dict)
    retry_policy: Mapping[str, Any] | None = None

    @property
    def object_name(self) -> str:
        return self.id + OBJECT_SUFFIX

    def summary(self) -> dict[str, Any]:
        """What `dead-letters list` shows of a record (no body)."""
        return {
            "id": self.id,
            "task_type": self.task_type,
            "queue": self.queue_key,
            "kind": self.kind,
            "attempts": self.attempts.get("made"),
            "recorded_at": self.recorded_at,
            "body_bytes": len(self.body),
            "last_error": self.last_error,
        }

    def detail(self) -> dict[str, Any]:
        """Everything, the body decoded (JSON when it is JSON, else base64)."""
        from ops.bodies import decoded_body

        body, encoding = decoded_body(self.body)
        return {
            **self.summary(),
            "task_name": self.task_name,
            "queue_id": self.queue_id,
            "attempt_history": dict(self.attempts),
            "retry_policy": None if self.retry_policy is None else dict(self.retry_policy),
            "headers": dict(self.headers),
            "body": body,
            "body_encoding": encoding,
        }


def dead_letter_id(name: str) -> str:
    """The id of a dead letter given as an id, an object name or a gs:// URI."""
    if name.startswith("gs://"):
        name = name.removeprefix("gs://").partition("/")[2]
    return name.removesuffix(OBJECT_SUFFIX)


def parse_record(object_name: str, data: bytes) -> DeadLetterRecord:
    """The record stored as ``object_name``; raises ``BadRecordError`` saying what is wrong."""
    where = f"dead letter {dead_letter_id(object_name)}"
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRecordError(f"{where} is not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise BadRecordError(f"{where} is not a JSON object")
    if raw.get("format") != RECORD_FORMAT:
        raise BadRecordError(
            f"{where} has record format {raw.get('format')!r}; this command reads format "
            f"{RECORD_FORMAT}: use the ops command of the worker's version"
        )
    task_type = raw.get("task_type")
    if not isinstance(task_type, str) or not task_type:
        raise BadRecordError(f"{where} has no task_type")
    headers = raw.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise BadRecordError(f"{where}: headers must be an object of strings")
    queue = raw.get("queue") or {}
    attempts = raw.get("attempts") or {}
    if not isinstance(queue, dict) or not isinstance(attempts, dict):
        raise BadRecordError(f"{where}: queue and attempts must be objects")
    body = _body(raw, where)
    return DeadLetterRecord(
        id=dead_letter_id(object_name),
        task_type=task_type,
        body=body,
        headers=headers,
        task_name=raw.get("task_name"),
        queue_key=queue.get("key"),
        queue_id=queue.get("id"),
        kind=str(raw.get("kind") or "permanent"),
        last_error=str(raw.get("last_error") or ""),
        recorded_at=raw.get("recorded_at"),
        attempts=attempts,
        retry_policy=raw.get("retry_policy"),
    )


def _body(raw: Mapping[str, Any], where: str) -> bytes:
    text = raw.get("body")
    encoding = raw.get("body_encoding")
    if not isinstance(text, str):
        raise BadRecordError(f"{where} has no body")
    if encoding == "utf-8":
        body = text.encode("utf-8")
    elif encoding == "base64":
        try:
            body = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise BadRecordError(f"{where}: the body is not valid base64") from None
    else:
        raise BadRecordError(f"{where}: unknown body_encoding {encoding!r}")
    expected = raw.get("body_bytes")
    if expected is not None and expected != len(body):
        # The worker never cuts a body: a mismatch is a damaged record, not a task to replay.
        raise BadRecordError(
            f"{where}: the body has {len(body)} bytes but the record says {expected}"
        )
    return body


class DeadLetterStore:
    """The stack's dead-letter bucket, read through the official client."""

    def __init__(self, outputs: StackOutputs, *, env: Mapping[str, str] | None = None) -> None:
        if outputs.dead_letter_bucket is None:
            raise OutputsError(
                f"the outputs have no {OUTPUT_DEAD_LETTER_BUCKET}: the stack keeps no dead "
                "letters yet; deploy a version with the dead-letter bucket (or bring the local "
                "stack up again) and pass its outputs"
            )
        self.bucket_name = outputs.dead_letter_bucket
        self._bucket = _bucket(outputs, self.bucket_name, os.environ if env is None else env)

    def uri(self, letter_id: str) -> str:
        return f"gs://{self.bucket_name}/{letter_id}{OBJECT_SUFFIX}"

    def names(self, prefix: str = "") -> Iterator[str]:
        """Object names of the dead letters under ``prefix`` (a queue id + `/`), sorted."""
        try:
            blobs = self._bucket.list_blobs(
                prefix=prefix or None, timeout=READ_TIMEOUT_S, retry=_retry()
            )
            found = sorted(b.name for b in blobs if b.name.endswith(OBJECT_SUFFIX))
        except Exception as exc:
            raise self._failed(exc, "list") from None
        yield from found

    def read(self, letter_id: str) -> DeadLetterRecord:
        """One record; ``EnqueueFailedError`` if it is missing, ``BadRecordError`` if damaged."""
        from google.api_core.exceptions import NotFound

        name = dead_letter_id(letter_id) + OBJECT_SUFFIX
        blob = self._bucket.blob(name)
        try:
            data = blob.download_as_bytes(timeout=READ_TIMEOUT_S, retry=_retry())
        except NotFound:
            raise NotFoundError(
                f"no dead letter {dead_letter_id(letter_id)} in gs://{self.bucket_name}: "
                "`dead-letters list` shows the ids",
                name=self.uri(dead_letter_id(letter_id)),
                attempts=1,
            ) from None
        except Exception as exc:
            raise self._failed(exc, "read") from None
        if len(data) > MAX_RECORD_BYTES:
            raise BadRecordError(f"dead letter {dead_letter_id(name)} is too large to be one")
        return parse_record(name, data)

    def _failed(self, exc: Exception, verb: str) -> EnqueueFailedError:
        from google.api_core import exceptions as gexc

        where = f"gs://{self.bucket_name}"
        if isinstance(exc, gexc.Forbidden):
            message = (
                f"permission denied to {verb} {where} ({exc.message}): the caller needs "
                f"{STORAGE_OBJECT_VIEWER_ROLE} on the bucket (stack config operators)"
            )
        elif isinstance(exc, gexc.NotFound):
            message = f"bucket {where} not found ({exc.message}): are the outputs current?"
        elif isinstance(exc, gexc.GoogleAPICallError):
            message = f"Cloud Storage could not {verb} {where}: {exc.message}"
        else:
            message = f"Cloud Storage could not {verb} {where}: {type(exc).__name__}: {exc}"
        return EnqueueFailedError(message, name=where, attempts=1)


def _retry() -> Any:
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(READ_RETRY_BUDGET_S)


def _bucket(outputs: StackOutputs, name: str, env: Mapping[str, str]) -> Bucket:
    # Imported here: the client costs a large part of a second (see ops/cli.py).
    from google.auth import exceptions as auth_exceptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.storage import Client

    emulator = env.get(STORAGE_EMULATOR_HOST_ENV, "").strip() or outputs.storage_emulator_host
    if emulator:
        client = Client(
            project=outputs.project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": emulator.rstrip("/")},
        )
        return client.bucket(name)
    try:
        return Client(project=outputs.project).bucket(name)
    except auth_exceptions.DefaultCredentialsError as exc:
        raise ClientSetupError(
            "no Google credentials for Cloud Storage: run `gcloud auth application-default "
            f"login` (or set GOOGLE_APPLICATION_CREDENTIALS) ({exc})"
        ) from None
