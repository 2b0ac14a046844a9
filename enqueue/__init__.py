"""The enqueue helper: put correct tasks on the stack's queue, one or many.

    from enqueue import Enqueuer, load_outputs

    outputs = load_outputs(".devstack/dev/outputs.json")   # or stack="dev", or a dict
    with Enqueuer(outputs) as enqueuer:
        name = enqueuer.send("email", {"to": "a@example.com"}, key="order-42")

``AsyncEnqueuer`` is the asyncio twin; ``enqueue_many`` runs a bulk enqueue with
bounded concurrency; ``python -m enqueue`` is the command line (README.md).

The package deliberately does not create queues or services, and does not
check the worker: it only creates tasks (the smoke test checks the rest).
"""

from enqueue.bulk import BulkItem, BulkSummary, TaskOutcome, enqueue_many, read_jsonl
from enqueue.client import (
    RetryPolicy,
    Transport,
    make_async_client,
    make_client,
    resolve_endpoint,
)
from enqueue.enqueuer import AsyncEnqueuer, Enqueuer, EnqueueResult
from enqueue.errors import (
    AlreadyEnqueuedError,
    ClientSetupError,
    EnqueueError,
    EnqueueFailedError,
    LargeTaskWarning,
    OutputsError,
    TaskValidationError,
)
from enqueue.outputs import StackOutputs, UnknownOutputsWarning, load_outputs
from enqueue.spec import TaskSpec, build_task, task_id_for_key

__all__ = [
    "AlreadyEnqueuedError",
    "AsyncEnqueuer",
    "BulkItem",
    "BulkSummary",
    "ClientSetupError",
    "EnqueueError",
    "EnqueueFailedError",
    "EnqueueResult",
    "Enqueuer",
    "LargeTaskWarning",
    "OutputsError",
    "RetryPolicy",
    "StackOutputs",
    "TaskOutcome",
    "TaskSpec",
    "TaskValidationError",
    "Transport",
    "UnknownOutputsWarning",
    "build_task",
    "enqueue_many",
    "load_outputs",
    "make_async_client",
    "make_client",
    "read_jsonl",
    "resolve_endpoint",
    "task_id_for_key",
]
