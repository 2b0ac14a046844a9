"""The two ways a plan fails: it cannot be made, or a file is not a plan.

Deliberately nothing else: each module raises these with a message that says
what to do.
"""

from __future__ import annotations

PLAN_JSON_COMMAND = "python -m plan --stack S --format json"
"""The command that writes a plan file, named in every message about one."""


class PlanError(RuntimeError):
    """The plan cannot be made (missing stack file, unreadable YAML, invalid config...).

    `declared` counts the resources the program had registered when it failed:
    0 for a config error, which the program raises before declaring anything.
    """

    def __init__(self, message: str, declared: int = 0) -> None:
        super().__init__(message)
        self.declared = declared


class PlanFormatError(ValueError):
    """Data that is not a plan in the JSON shape `python -m plan --format json` prints."""
