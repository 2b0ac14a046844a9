"""Which HTTP headers a task may carry: one rule for the enqueue helper and the emulator.

Cloud Tasks computes or replaces some headers itself and reserves some prefixes
(``HttpRequest.headers`` in google/cloud/tasks/v2/target.proto: "Host",
"Content-Length", "User-Agent", "X-Google-*", "X-AppEngine-*", and the
"X-CloudTasks-*" service headers). ``Authorization`` is replaced when the task
carries an OIDC or OAuth token. Hop-by-hop headers (RFC 9110 section 7.6.1:
``Connection`` and the headers it governs, ``Transfer-Encoding``, ``Upgrade``...)
describe one connection, not the request: a task that set them could change how
the request is framed on the way to the worker, so they are refused as well.

The enqueue helper refuses every reserved header before anything is sent; the
emulator drops them from the request it delivers, as Cloud Tasks ignores or
replaces them. Both ask :func:`reserved_header_reason`.
"""

from __future__ import annotations

import re
from typing import Final

# RFC 9110 section 5.6.2 token characters.
HEADER_NAME_PATTERN: Final = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_HEADER_NAME_RE: Final = re.compile(HEADER_NAME_PATTERN)
# RFC 9110 section 5.5: a field value is visible characters, SP, HTAB and
# obs-text; every other control character (CR, LF, NUL among them) cannot be sent.
HEADER_VALUE_FORBIDDEN: Final = "".join(chr(c) for c in (*range(0x20), 0x7F) if c != 0x09)

# Computed by Cloud Tasks for every request (target.proto).
COMPUTED_HEADERS: Final = frozenset({"host", "content-length", "user-agent"})
# RFC 9110 section 7.6.1 and the connection-specific headers it names.
HOP_BY_HOP_HEADERS: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
AUTHORIZATION_HEADER: Final = "authorization"
RESERVED_HEADER_PREFIXES: Final = ("x-cloudtasks-", "x-google-", "x-appengine-")


def header_name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid HTTP header name, or None when it is."""
    if not isinstance(name, str) or _HEADER_NAME_RE.fullmatch(name) is None:
        shown = name[:100] if isinstance(name, str) else name
        return f"{shown!r} is not a valid HTTP header name (RFC 9110 token characters only)"
    return None


def header_value_problem(name: str, value: object) -> str | None:
    """Why ``value`` cannot be the value of header ``name``, or None when it can."""
    if not isinstance(value, str):
        return f"the value of {name} must be a string, got {type(value).__name__}"
    if any(c in value for c in HEADER_VALUE_FORBIDDEN):
        return f"the value of {name} contains CR, LF or NUL or another control character"
    return None


def reserved_header_reason(name: str, *, with_token: bool = True) -> str | None:
    """Why a task cannot set header ``name``, or None when it may.

    ``with_token``: the task carries an OIDC/OAuth token, so Cloud Tasks replaces
    ``Authorization``; without a token the task's own ``Authorization`` is sent.
    """
    lower = name.lower()
    if lower in COMPUTED_HEADERS:
        return f"{name} is computed by Cloud Tasks for every request"
    if lower in HOP_BY_HOP_HEADERS:
        return f"{name} is a hop-by-hop header: it describes a connection, not the task"
    if lower.startswith(RESERVED_HEADER_PREFIXES):
        return (
            f"{name} is in a prefix Cloud Tasks reserves "
            "(X-CloudTasks-*, X-Google-*, X-AppEngine-*)"
        )
    if with_token and lower == AUTHORIZATION_HEADER:
        return f"{name} is replaced by the task's OIDC token"
    return None


def is_reserved_header(name: str, *, with_token: bool = True) -> bool:
    """True when a task cannot set ``name`` (see :func:`reserved_header_reason`)."""
    return reserved_header_reason(name, with_token=with_token) is not None
