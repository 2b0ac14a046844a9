"""Resource names, field validation and the retry arithmetic of queue.proto.

Pure functions only: no state, no I/O, so the API core and the tests share the
exact rules (and the error messages that tell a caller how to fix a request).
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import urlsplit

from contract.limits import (
    MAX_HEADERS_BYTES,
    MAX_URL_CHARS,
    QUEUE_ID_MAX_CHARS,
    QUEUE_ID_PATTERN,
    TASK_ID_MAX_CHARS,
    TASK_ID_PATTERN,
)
from emulator.errors import invalid

_PROJECT = r"[A-Za-z0-9][A-Za-z0-9.:_-]{0,127}"
_LOCATION = r"[A-Za-z0-9][A-Za-z0-9-]{0,62}"
LOCATION_RE: Final = re.compile(rf"projects/({_PROJECT})/locations/({_LOCATION})")
QUEUE_ID_RE: Final = re.compile(QUEUE_ID_PATTERN)
TASK_ID_RE: Final = re.compile(TASK_ID_PATTERN)
# RFC 7230 token characters for header names; values may not carry CR, LF or NUL.
_HEADER_NAME_RE: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE_BAD: Final = re.compile(r"[\r\n\x00]")

# Headers Cloud Tasks computes or reserves itself; a task cannot set them.
RESERVED_HEADERS: Final = frozenset({"host", "content-length", "user-agent", "connection"})
RESERVED_PREFIXES: Final = ("x-cloudtasks-", "x-google-", "x-appengine-")


def check_location(parent: str) -> None:
    if not LOCATION_RE.fullmatch(parent):
        raise invalid(
            f"Invalid parent {parent!r}: expected projects/PROJECT_ID/locations/LOCATION_ID"
        )


def split_queue_name(name: str) -> tuple[str, str]:
    """``projects/P/locations/L/queues/Q`` -> (``projects/P/locations/L``, ``Q``)."""
    parent, sep, queue_id = name.rpartition("/queues/")
    if not sep or not LOCATION_RE.fullmatch(parent):
        raise invalid(
            f"Invalid queue name {name!r}: expected "
            "projects/PROJECT_ID/locations/LOCATION_ID/queues/QUEUE_ID"
        )
    if not QUEUE_ID_RE.fullmatch(queue_id):
        raise invalid(
            f"Invalid queue id {queue_id[:120]!r}: a queue id is 1 to {QUEUE_ID_MAX_CHARS} "
            "characters of letters, digits and hyphens ([A-Za-z0-9-])"
        )
    return parent, queue_id


def split_task_name(name: str) -> tuple[str, str]:
    """``.../queues/Q/tasks/T`` -> (queue name, ``T``)."""
    queue, sep, task_id = name.rpartition("/tasks/")
    if not sep:
        raise invalid(
            f"Invalid task name {name[:200]!r}: expected "
            "projects/PROJECT_ID/locations/LOCATION_ID/queues/QUEUE_ID/tasks/TASK_ID"
        )
    split_queue_name(queue)
    if not TASK_ID_RE.fullmatch(task_id):
        raise invalid(
            f"Invalid task id {task_id[:120]!r}: a task id is 1 to {TASK_ID_MAX_CHARS} "
            "characters of letters, digits, hyphens and underscores ([A-Za-z0-9_-])"
        )
    return queue, task_id


def check_url(url: str, what: str = "HttpRequest.url") -> None:
    if len(url) > MAX_URL_CHARS:
        raise invalid(f"{what} is {len(url)} characters long; the maximum is {MAX_URL_CHARS}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise invalid(f"{what} {url[:200]!r} is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid(
            f"{what} {url[:200]!r} must be an absolute http:// or https:// URL with a host"
        )
    if port == 0:
        raise invalid(f"{what} {url[:200]!r} has port 0")
    if any(c in url for c in "\r\n\x00 "):
        raise invalid(f"{what} must not contain spaces or control characters")


def check_headers(headers: dict[str, str], what: str = "HttpRequest.headers") -> None:
    total = 0
    for key, value in headers.items():
        if not _HEADER_NAME_RE.fullmatch(key):
            raise invalid(f"{what}: {key[:100]!r} is not a valid HTTP header name")
        if _HEADER_VALUE_BAD.search(value):
            raise invalid(f"{what}: the value of {key!r} contains CR, LF or NUL")
        total += len(key.encode()) + len(value.encode())
    if total >= MAX_HEADERS_BYTES:
        raise invalid(
            f"{what} are {total} bytes in total; Cloud Tasks requires less than "
            f"{MAX_HEADERS_BYTES} bytes"
        )


def is_reserved_header(key: str) -> bool:
    lower = key.lower()
    return lower in RESERVED_HEADERS or lower.startswith(RESERVED_PREFIXES)


def check_email(email: str, what: str) -> None:
    if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
        raise invalid(f"{what} {email[:100]!r} is not a service account email")


# google.protobuf Timestamp/Duration ranges: values outside them cannot be
# rendered as JSON, so they are rejected up front rather than breaking REST reads.
_MIN_TIMESTAMP_S: Final = -62_135_596_800  # 0001-01-01T00:00:00Z
_MAX_TIMESTAMP_S: Final = 253_402_300_799  # 9999-12-31T23:59:59Z
_MAX_DURATION_S: Final = 315_576_000_000


def check_timestamp(ts: Any, what: str) -> None:
    if not _MIN_TIMESTAMP_S <= ts.seconds <= _MAX_TIMESTAMP_S or not 0 <= ts.nanos < 10**9:
        raise invalid(f"{what} is not a valid timestamp (years 0001..9999, nanos 0..999999999)")


def check_duration(d: Any, what: str) -> None:
    if (
        not -_MAX_DURATION_S <= d.seconds <= _MAX_DURATION_S
        or not -(10**9) < d.nanos < 10**9
        or (d.seconds > 0 and d.nanos < 0)
        or (d.seconds < 0 and d.nanos > 0)
    ):
        raise invalid(f"{what} is not a valid duration")


def retry_delay(
    retry_index: int,
    min_backoff: float,
    max_backoff: float,
    max_doublings: int,
) -> float:
    """Seconds before retry number ``retry_index`` (0 = the first retry).

    queue.proto: the interval starts at min_backoff, doubles max_doublings
    times, then grows linearly by ``2**max_doublings * min_backoff`` per retry,
    and never exceeds max_backoff (10s, 20s, 40s, 80s, 160s, 240s, 300s, ...).
    """
    if retry_index < 0:
        raise ValueError("retry_index must be >= 0")
    doublings = max(0, max_doublings)
    if retry_index <= doublings:
        # Cap the exponent: 2**retry_index overflows a float long before it matters.
        delay = min_backoff * float(2 ** min(retry_index, 64))
    else:
        step = min_backoff * float(2 ** min(doublings, 64))
        delay = step * (1 + retry_index - doublings)
    return min(delay, max_backoff)
