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
_FORMATTED_RE: Final = re.compile(r"\d+(\.\d{1,9})?s")
_NON_FINITE_RE: Final = re.compile(r"\s*[+-]?(inf|infinity|nan)\s*", re.IGNORECASE)
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, None: 1}
DURATION_EXAMPLES: Final = "30s, 0.5s, 5m or 1h (or a number of seconds)"
WHOLE_DURATION_EXAMPLES: Final = "30s, 5m or 1h (or a whole number of seconds)"


class DurationError(ValueError):
    """A value that is not a duration; the message says what was given and what to write."""


def _prefix(what: str) -> str:
    return f"{what}: " if what else ""


def parse_duration_s(value: object, *, what: str = "duration", whole: bool = False) -> float:
    """Seconds in ``value``: a number of seconds, or text like 30s, 0.5s, 5m, 1h.

    ``whole``: refuse fractions of a second. Cloud Tasks truncates queue
    durations to whole seconds (``RetryConfig`` in google/cloud/tasks/v2/queue.proto),
    so config refuses them rather than silently changing the value.
    Negative, infinite and NaN values are always refused.
    """
    examples = WHOLE_DURATION_EXAMPLES if whole else DURATION_EXAMPLES
    if isinstance(value, bool):
        raise DurationError(f"{_prefix(what)}expected a duration like {examples}, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
        if math.isnan(seconds) or math.isinf(seconds):
            raise DurationError(f"{_prefix(what)}{value!r} is not a finite number of seconds")
    else:
        text = str(value)
        if _NON_FINITE_RE.fullmatch(text):
            raise DurationError(f"{_prefix(what)}{text!r} is not a finite number of seconds")
        match = _DURATION_RE.fullmatch(text)
        if match is None:
            if text.strip().startswith("-"):
                raise DurationError(f"{_prefix(what)}a duration cannot be negative, got {value!r}")
            raise DurationError(
                f"{_prefix(what)}cannot read {value!r} as a duration; write it like {examples}"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < 0:
        raise DurationError(f"{_prefix(what)}a duration cannot be negative, got {value!r}")
    if whole and not seconds.is_integer():
        raise DurationError(
            f"{_prefix(what)}{value!r} is not a whole number of seconds; Cloud Tasks truncates "
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


def parse_formatted_duration(text: object, *, what: str = "duration") -> float:
    """The inverse of :func:`format_duration`: only the protobuf JSON form ("600s", "0.5s").

    For values the project itself wrote (stack outputs, provider properties),
    where any other spelling means the value was not produced by this code.
    """
    if not isinstance(text, str) or _FORMATTED_RE.fullmatch(text) is None:
        raise DurationError(
            f"{_prefix(what)}expected seconds in protobuf JSON form like '600s' or '0.5s', "
            f"got {text!r}"
        )
    return float(text[:-1])


def seconds_text(value: float) -> str:
    """A number of seconds as the user wrote it: 2592001 stays 2592001, not 2.592e+06."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)
