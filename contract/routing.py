"""Which queue a task type goes to: one rule for the program, the enqueue helper, the
worker and the local stack.

`routes` maps a task type to a queue key; a type without a route goes to the `default`
queue, which every stack has.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from contract.names import OUTPUT_QUEUE, OUTPUT_QUEUES

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


def output_queues(outputs: Mapping[str, object]) -> dict[str, str]:
    """{queue key: full queue path} from stack outputs (or `.devstack/<stack>/outputs.json`).

    The `queues` output when present; outputs of a stack made before there were
    several queues lack it and describe one queue: `default` = the `queue` output.
    Values are taken as given (the enqueue helper validates them; `status` and the
    smoke test report what the API answers about each).
    """
    queues = outputs.get(OUTPUT_QUEUES)
    if isinstance(queues, Mapping) and queues:
        return {str(key): str(path) for key, path in queues.items()}
    return {DEFAULT_QUEUE_KEY: str(outputs.get(OUTPUT_QUEUE, ""))}
