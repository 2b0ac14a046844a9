"""Errors the enqueue helper raises, each carrying a message that says what is
wrong and how to fix it.

Every error derives from :class:`EnqueueError`, so an application can catch the
helper's failures in one place. The module deliberately does not wrap
programming errors (a ``TypeError`` from a wrong call signature stays a
``TypeError``): only problems with the input, the outputs or the API are
translated here.
"""

from __future__ import annotations


class EnqueueError(Exception):
    """Base class: anything the helper reports about input, outputs or the API."""


class OutputsError(EnqueueError):
    """The stack outputs could not be loaded, or are missing or malformed keys."""


class TaskValidationError(EnqueueError, ValueError):
    """A task was rejected before any API call; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ClientSetupError(EnqueueError):
    """No Cloud Tasks client could be built (no credentials, bad endpoint)."""


class AlreadyEnqueuedError(EnqueueError):
    """A task with this name exists, and the caller asked for that to be an error."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"already enqueued: {name} (a task with this name exists or ran within the "
            "dedup window; use another name or key to enqueue it again)"
        )
        self.name = name


class EnqueueFailedError(EnqueueError):
    """The API refused the task or stayed unreachable after the retries."""

    def __init__(self, message: str, *, name: str, attempts: int) -> None:
        super().__init__(message)
        self.name = name
        self.attempts = attempts


class NotFoundError(EnqueueFailedError):
    """The API answered that nothing has this name (a task or dead letter to show or cancel)."""


class LargeTaskWarning(UserWarning):
    """A task is over the 100 KB the API reference states, below the 1 MiB quota."""
