"""The worker's answers: one constructor per status, body and log severity.

Every response the worker gives is built here, so each shape exists once:

| constructor | status | body `status` | severity | Cloud Tasks then |
|---|---|---|---|---|
| `done` | 200 | ok (+ result) | INFO | deletes the task |
| `duplicate` | 200 | duplicate | INFO | deletes the task |
| `dead_lettered` (permanent, bad payload, unknown type) | 200 | dead_letter | WARNING | deletes |
| `transient` (`TransientError`) | its status | retry (+ `Retry-After`) | WARNING | retries |
| `timed_out` (the type's `timeout_s`) | 503 | retry | WARNING | retries |
| `crashed` (any other exception) | 500 | error | ERROR | retries |
| `dependency_failed` (store, dead-letter sink) | 503 | retry (+ `Retry-After`) | ERROR | retries |
| `in_progress` (running duplicate) | 409 | in_progress (+ `Retry-After`) | WARNING | retries |
| `too_large` | 413 | too_large | WARNING | retries (it never fits) |
| `unauthenticated` / `forbidden` | 401 / 403 | same | WARNING | retries |
| `certs_unavailable` | 503 | retry (+ `Retry-After`) | ERROR | retries |
| `draining` (SIGTERM) | 503 | draining (+ `Retry-After`) | (no task line) | retries |
| `health` | 200 / 503 | ok / draining | (no line) | - |
| `no_route` | 404 / 405 | no_route | WARNING | retries until max attempts |
| `disconnected` | 400 | (empty) | INFO | - |
| `body_timed_out` | 408 | timeout | WARNING | retries (cannot come from Cloud Tasks) |

A misrouted task (it arrived on a queue its type's route does not name,
`service.queues`) is dead-lettered too.

Cloud Tasks deletes a task on a 2xx and retries it on any other status, with
the queue's RetryConfig backoff
(https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues#RetryConfig).

An `Outcome` is plain data: `service.app` renders it as an HTTP response and
`service.delivery` writes the task's log line from it. This module deliberately
decides nothing (which outcome a delivery gets is `service.delivery`'s job) and
knows no web framework. A reason goes to the log only, never into the body:
telling a caller why its token failed, or naming a backend host, helps an
attacker more than the legitimate caller.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic_core import to_jsonable_python

from contract.limits import MAX_TASK_BYTES
from service.errors import TransientError

logger = logging.getLogger("service.outcomes")

DUPLICATE_RETRY_AFTER_S: Final = 10
DRAINING_RETRY_AFTER_S: Final = 1
CERTS_RETRY_AFTER_S: Final = 10
DEPENDENCY_RETRY_AFTER_S: Final = 10  # dead-letter sink or idempotency store failing

OK: Final = "ok"
DEAD_LETTER: Final = "dead_letter"
# Outcomes that decide the task's fate: its idempotency key is completed with them.
SETTLED: Final = frozenset({OK, DEAD_LETTER})


@dataclass(frozen=True, slots=True)
class Outcome:
    """One answer: the HTTP status, JSON body and headers, and how it is logged."""

    status: int
    outcome: str
    """The `outcome` field of the task's log line."""
    body: Mapping[str, Any] | None
    """The JSON body; None for an empty one."""
    headers: Mapping[str, str] = field(default_factory=dict)
    severity: int = logging.INFO
    reason: str | None = None
    exc_info: BaseException | None = None

    @property
    def settled(self) -> bool:
        """The task's fate is decided: a later delivery of it is a duplicate."""
        return self.outcome in SETTLED


# --- a handler ran (or was never going to) ------------------------------------------


def done(result: Any) -> Outcome:
    """The handler returned `result` (in the body for people debugging with curl)."""
    try:
        rendered = to_jsonable_python(result, fallback=str)
    except Exception:  # the work is done; an odd return value must not undo that
        logger.warning("handler result is not serialisable; returning its repr")
        rendered = repr(result)[:1000]
    return Outcome(200, OK, {"status": "ok", "result": rendered})


def duplicate(previous_outcome: str) -> Outcome:
    """A delivery of a task that already finished: acknowledged, not run again."""
    return Outcome(200, "duplicate", {"status": "duplicate", "previous_outcome": previous_outcome})


def dead_lettered(reason: str) -> Outcome:
    """A task that can never succeed, already recorded as a dead letter: acknowledged."""
    # WARNING: the dead-letter entry itself (service.deadletter) is the ERROR.
    return Outcome(
        200, DEAD_LETTER, {"status": "dead_letter", "reason": reason}, severity=logging.WARNING
    )


def unknown_type_reason(task_type: str, known: list[str]) -> str:
    """The dead-letter reason for a type this worker does not handle."""
    return f"unknown task type {task_type!r}; this worker handles {', '.join(known)}"


def transient(exc: TransientError) -> Outcome:
    """The handler asked for a retry, with its status and optional `Retry-After`."""
    retry_after = exc.retry_after_header
    return Outcome(
        exc.status,
        "retry",
        {"status": "retry"},
        headers={"Retry-After": retry_after} if retry_after else {},
        severity=logging.WARNING,
        reason=exc.message,
    )


def timed_out(timeout_s: float) -> Outcome:
    """The handler outlived its type's `timeout_s`: its answer is abandoned, retried."""
    return Outcome(
        503,
        "retry",
        {"status": "retry"},
        severity=logging.WARNING,
        reason=f"handler exceeded its timeout of {timeout_s:g} s",
    )


def crashed(exc: BaseException) -> Outcome:
    """A bug or an unforeseen failure: retried (a fix may ship first), with the trace."""
    return Outcome(500, "error", {"status": "error"}, severity=logging.ERROR, exc_info=exc)


def dependency_failed(reason: str, exc: BaseException) -> Outcome:
    """The idempotency store or dead-letter sink failed: retry rather than risk the task."""
    return Outcome(
        503,
        "retry",
        {"status": "retry"},
        headers={"Retry-After": str(DEPENDENCY_RETRY_AFTER_S)},
        severity=logging.ERROR,
        reason=reason,
        exc_info=exc,
    )


def in_progress() -> Outcome:
    """A duplicate of a task still running here: come back later, it may fail."""
    return Outcome(
        409,
        "in_progress",
        {"status": "in_progress"},
        headers={"Retry-After": str(DUPLICATE_RETRY_AFTER_S)},
        severity=logging.WARNING,
    )


def too_large() -> Outcome:
    """A body above the Cloud Tasks task size limit (contract.limits.MAX_TASK_BYTES)."""
    return Outcome(
        413,
        "too_large",
        {"status": "too_large", "limit_bytes": MAX_TASK_BYTES},
        severity=logging.WARNING,
        reason=f"body above {MAX_TASK_BYTES} bytes, the Cloud Tasks task size limit",
    )


# --- the request never reached a handler --------------------------------------------


def unauthenticated(reason: str) -> Outcome:
    """Missing or invalid token (RFC 6750 section 3: a `Bearer` challenge)."""
    return Outcome(
        401,
        "unauthenticated",
        {"status": "unauthenticated"},
        headers={"WWW-Authenticate": "Bearer"},
        severity=logging.WARNING,
        reason=reason,
    )


def forbidden(reason: str) -> Outcome:
    """A valid token of an identity that may not run tasks."""
    return Outcome(
        403, "forbidden", {"status": "forbidden"}, severity=logging.WARNING, reason=reason
    )


def certs_unavailable(reason: str) -> Outcome:
    """The token could not be checked (no signing certificates): retried."""
    return Outcome(
        503,
        "certs_unavailable",
        {"status": "retry"},
        headers={"Retry-After": str(CERTS_RETRY_AFTER_S)},
        severity=logging.ERROR,
        reason=reason,
    )


def draining() -> Outcome:
    """Shutting down: Cloud Tasks retries elsewhere; `Connection: close` ends keep-alive."""
    return Outcome(
        503,
        "draining",
        {"status": "draining"},
        headers={"Retry-After": str(DRAINING_RETRY_AFTER_S), "Connection": "close"},
    )


def health(*, is_draining: bool) -> Outcome:
    """`GET /healthz`: 200 while serving, 503 while draining."""
    if is_draining:
        return Outcome(503, "draining", {"status": "draining"})
    return Outcome(200, OK, {"status": "ok"})


def no_route(status: int, headers: Mapping[str, str] | None) -> Outcome:
    """404 or 405 (`headers` keeps a 405's `Allow`)."""
    return Outcome(
        status, "no_route", {"status": "no_route"}, headers=headers or {}, severity=logging.WARNING
    )


def disconnected() -> Outcome:
    """The caller went away before sending the whole task: nobody reads this answer."""
    return Outcome(400, "disconnected", None)


def body_timed_out(timeout_s: float) -> Outcome:
    """The body did not arrive in `timeout_s` (RFC 9110 section 15.5.9): the connection ends."""
    return Outcome(
        408,
        "body_timeout",
        {"status": "timeout"},
        headers={"Connection": "close"},
        severity=logging.WARNING,
        reason=f"request body not received within {timeout_s:g} s",
    )
