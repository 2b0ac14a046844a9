"""The Cloud Run worker that Cloud Tasks pushes to.

What a team imports to add a task type (see README.md):

    from service import PermanentError, TaskContext, TransientError, registry

The app is built by the factory `service.app:create_app`; `python -m service`
serves it. Importing this package (or `service.app`) deliberately starts
nothing and reads no environment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contract.interpreter import lazy_exports

if TYPE_CHECKING:
    from service.context import TaskContext as TaskContext, TraceContext as TraceContext
    from service.deadletter import DeadLetter as DeadLetter, DeadLetterSink as DeadLetterSink
    from service.errors import PermanentError as PermanentError, TransientError as TransientError
    from service.idempotency import (
        Claim as Claim,
        ClaimState as ClaimState,
        Completion as Completion,
        IdempotencyStore as IdempotencyStore,
        InMemoryIdempotencyStore as InMemoryIdempotencyStore,
    )
    from service.task_registry import (
        TaskRegistry as TaskRegistry,
        TaskType as TaskType,
        registry as registry,
    )

# Public name -> the module that defines it (loaded on first use, so that
# `python -m service` under a foreign interpreter can say so in one line).
_HOMES = {
    "TaskContext": "service.context",
    "TraceContext": "service.context",
    "DeadLetter": "service.deadletter",
    "DeadLetterSink": "service.deadletter",
    "PermanentError": "service.errors",
    "TransientError": "service.errors",
    "Claim": "service.idempotency",
    "ClaimState": "service.idempotency",
    "Completion": "service.idempotency",
    "IdempotencyStore": "service.idempotency",
    "InMemoryIdempotencyStore": "service.idempotency",
    "TaskRegistry": "service.task_registry",
    "TaskType": "service.task_registry",
    "registry": "service.task_registry",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_exports("service", _HOMES, globals())
