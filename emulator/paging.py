"""Page tokens of ListQueues and ListTasks, and the page arithmetic around them.

A token is ``"ctpage1:" + the last name of the previous page``, base64url. The
marker and the name's prefix (the listed parent) make a token self-validating:
garbage, a token of another list, or base64 of anything else is
INVALID_ARGUMENT, as ``page_token`` of ListQueuesRequest/ListTasksRequest asks
(https://cloud.google.com/tasks/docs/reference/rpc/google.cloud.tasks.v2#listtasksrequest).

It deliberately knows nothing about queues or tasks: it pages sorted names.
"""

from __future__ import annotations

import base64
import heapq
from collections.abc import Iterable
from typing import Final

from emulator.errors import invalid

_PAGE_MARKER: Final = "ctpage1:"


def page_token(name: str) -> str:
    return base64.urlsafe_b64encode((_PAGE_MARKER + name).encode()).decode()


def page_start(token: str, prefix: str) -> str:
    """The name after which the page starts; ``prefix`` is the listed parent + "/"."""
    if not token:
        return ""
    try:
        text = base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        text = ""
    name = text.removeprefix(_PAGE_MARKER)
    # The listed resource's id follows the prefix, with no further "/": a ListTasks
    # token (``.../queues/Q/tasks/T``) starts with ListQueues' prefix too.
    resource_id = name[len(prefix) :]
    if (
        not text.startswith(_PAGE_MARKER)
        or not name.startswith(prefix)
        or not resource_id
        or "/" in resource_id
    ):
        raise invalid(
            f"Invalid page_token {token[:100]!r}: pass back the next_page_token of a previous "
            "response of the same list call, or no page_token for the first page"
        )
    return name


def page_size(requested: int, maximum: int) -> int:
    """The effective page size: the maximum when 0, never above it; negative is invalid."""
    if requested < 0:
        raise invalid("page_size must not be negative")
    return min(requested or maximum, maximum)


def page(names: Iterable[str], token: str, prefix: str, size: int) -> tuple[list[str], str]:
    """The sorted names of one page after ``token`` and the next page's token ("" at the end).

    One pass keeping the ``size + 1`` smallest: O(n log size), where sorting every
    name was O(n log n) (a 1,000-task page of a million-task queue: about 0.1 s, not 1 s).
    """
    start = page_start(token, prefix)
    after = heapq.nsmallest(size + 1, (n for n in names if n > start) if start else names)
    if len(after) > size:
        return after[:size], page_token(after[size - 1])
    return after, ""
