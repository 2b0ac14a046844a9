"""The Cloud Run worker that Cloud Tasks pushes to.

What a team imports to add a task type (see README.md):

    from service import PermanentError, TaskContext, TransientError, registry

The app is built by the factory `service.app:create_app`; `python -m service`
serves it. Importing this package (or `service.app`) deliberately starts
nothing and reads no environment.
"""

from service.context import TaskContext, TraceContext
from service.deadletter import DeadLetter, DeadLetterSink
from service.errors import PermanentError, TransientError
from service.idempotency import (
    Claim,
    ClaimState,
    Completion,
    IdempotencyStore,
    InMemoryIdempotencyStore,
)
from service.task_registry import TaskRegistry, TaskType, registry

__all__ = [
    "Claim",
    "ClaimState",
    "Completion",
    "DeadLetter",
    "DeadLetterSink",
    "IdempotencyStore",
    "InMemoryIdempotencyStore",
    "PermanentError",
    "TaskContext",
    "TaskRegistry",
    "TaskType",
    "TraceContext",
    "TransientError",
    "registry",
]
