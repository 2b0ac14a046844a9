"""The task-type rule: which names the enqueue helper may send and the worker may register.

A task type is the last path segment of the worker route ``/tasks/{type}`` and a
key of the stack's ``routes`` map, so it is limited to characters that never need
escaping in a URL or quoting in YAML. It starts with a letter or digit (so it can
never be ``.`` or ``..``, or look like a hidden/private name) and may contain
``_``, ``-`` and ``.`` after that (``report.v2``). Both sides import this one
definition; a type one side accepts and the other refuses would be enqueued and
then dead-lettered as "unknown type".
"""

from __future__ import annotations

import re
from typing import Final

TASK_TYPE_MAX_CHARS: Final = 100
TASK_TYPE_PATTERN: Final = rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{TASK_TYPE_MAX_CHARS - 1}}}"
_TASK_TYPE_RE: Final = re.compile(TASK_TYPE_PATTERN)


def task_type_problem(name: object) -> str | None:
    """Why ``name`` is not a valid task type, or None when it is.

    The sentence says what is wrong and what a valid type looks like, so every
    caller can put it in its own error (a ValueError, a 404, a config error).
    """
    if not isinstance(name, str):
        return f"a task type must be a string, got {type(name).__name__}"
    if _TASK_TYPE_RE.fullmatch(name) is None:
        shown = name if len(name) <= 120 else name[:120] + "..."
        return (
            f"{shown!r} is not a valid task type: 1 to {TASK_TYPE_MAX_CHARS} characters, "
            "a letter or digit first, then letters, digits, '_', '-' or '.' (like report.v2); "
            "it is one path segment of /tasks/{type}"
        )
    return None


def is_task_type(name: object) -> bool:
    """True when ``name`` follows the task-type rule."""
    return task_type_problem(name) is None
