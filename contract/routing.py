"""Which queue a task type goes to: one rule for the program, the enqueue helper, the
worker and the local stack.

`routes` maps a task type to a queue key; a type without a route goes to the `default`
queue, which every stack has.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

DEFAULT_QUEUE_KEY: Final = "default"
QUEUE_KEY_RE: Final = re.compile(r"^[a-z][a-z0-9-]*$")
"""A queue key (`queues.<key>` in stack config): lowercase, starts with a letter."""
QUEUE_KEY_MAX_CHARS: Final = 40


def queue_key_problem(key: str) -> str | None:
    """Why `key` is not a valid queue key, or None."""
    if not QUEUE_KEY_RE.match(key) or len(key) > QUEUE_KEY_MAX_CHARS:
        return (
            f"queue key {key!r} must be 1..{QUEUE_KEY_MAX_CHARS} lowercase letters, digits and "
            "hyphens, starting with a letter (e.g. email, third-party-api)"
        )
    return None


def queue_for(task_type: str, routes: Mapping[str, str]) -> str:
    """The queue key `task_type` is routed to (`default` when it has no route)."""
    return routes.get(task_type, DEFAULT_QUEUE_KEY)
