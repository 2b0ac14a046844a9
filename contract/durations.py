"""Durations as people write them and as Google's APIs print them: one parser, one printer.

Stack config (``min_backoff: 5m``), provider properties in a plan (``"600s"``,
``"0.5s"``), command-line flags (``--delay 30``) and stack outputs
(``dispatch_deadline: "60s"``) all go through :func:`parse_duration_s`; every
duration the project writes goes through :func:`format_duration`, which prints
the protobuf JSON form of ``google.protobuf.Duration`` ("seconds with up to 9
fractional digits, suffixed with s", google/protobuf/duration.proto).

Deliberately not here: protobuf ``Duration`` messages (the emulator converts
those itself; this package imports nothing outside the standard library).
"""

from __future__ import annotations

import math
import re
from typing import Final

_DURATION_RE: Final = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(s|m|h)?\s*")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, None: 1}
DURATION_EXAMPLES: Final = "30s, 0.5s, 5m or 1h (or a number of seconds)"


class DurationError(ValueError):
    """A value that is not a duration; the message says what was given and what to write."""


def parse_duration_s(value: object, *, what: str = "duration", whole: bool = False) -> float:
    """Seconds in ``value``: a number of seconds, or text like 30s, 0.5s, 5m, 1h.

    ``whole``: refuse fractions of a second. Cloud Tasks truncates queue
    durations to whole seconds (``RetryConfig`` in google/cloud/tasks/v2/queue.proto),
    so config refuses them rather than silently changing the value.
    Negative, infinite and NaN values are always refused.
    """
    if isinstance(value, bool):
        raise DurationError(f"{what}: expected a duration like {DURATION_EXAMPLES}, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
        if math.isnan(seconds) or math.isinf(seconds):
            raise DurationError(f"{what}: {value!r} is not a finite number of seconds")
    else:
        match = _DURATION_RE.fullmatch(str(value))
        if match is None:
            if str(value).strip().startswith("-"):
                raise DurationError(f"{what}: a duration cannot be negative, got {value!r}")
            raise DurationError(
                f"{what}: cannot read {value!r} as a duration; write it like {DURATION_EXAMPLES}"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < 0:
        raise DurationError(f"{what}: a duration cannot be negative, got {value!r}")
    if whole and not seconds.is_integer():
        raise DurationError(
            f"{what}: {value!r} is not a whole number of seconds; Cloud Tasks truncates "
            "durations to whole seconds, so write it like 30s, 5m or 1h"
        )
    return seconds


def parse_whole_seconds(value: object, *, what: str = "duration") -> int:
    """Like :func:`parse_duration_s` with ``whole=True``, as an int."""
    return int(parse_duration_s(value, what=what, whole=True))


def format_duration(seconds: float) -> str:
    """The protobuf JSON form: 600 -> "600s", 0.5 -> "0.5s", 1.25 -> "1.25s"."""
    if math.isnan(seconds) or math.isinf(seconds):
        raise DurationError(f"cannot format {seconds!r} as a duration")
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{seconds:.9f}".rstrip("0") + "s"


def seconds_text(value: float) -> str:
    """A number of seconds as the user wrote it: 2592001 stays 2592001, not 2.592e+06."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)
