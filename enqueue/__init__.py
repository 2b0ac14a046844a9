"""The enqueue helper: put correct tasks on the stack's queue, one or many.

    from enqueue import Enqueuer, load_outputs

    outputs = load_outputs(".devstack/dev/outputs.json")   # or stack="dev", or a dict
    with Enqueuer(outputs) as enqueuer:
        name = enqueuer.send("email", {"to": "a@example.com"}, key="order-42")

``AsyncEnqueuer`` is the asyncio twin; ``enqueue_many`` runs a bulk enqueue with
bounded concurrency; ``python -m enqueue`` is the command line (README.md).

The package deliberately does not create queues or services, and does not
check the worker: it only creates tasks (the smoke test checks the rest).

The names are loaded on first use, so that `python -m enqueue` under an
interpreter that lacks the packages can say so in one line (enqueue/__main__.py)
instead of failing in this file's imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contract.interpreter import lazy_exports

if TYPE_CHECKING:
    from enqueue.bulk import (
        BulkItem as BulkItem,
        BulkSummary as BulkSummary,
        TaskOutcome as TaskOutcome,
        enqueue_many as enqueue_many,
        read_jsonl as read_jsonl,
    )
    from enqueue.client import (
        make_async_client as make_async_client,
        make_client as make_client,
        resolve_endpoint as resolve_endpoint,
    )
    from enqueue.defaults import (
        RetryPolicy as RetryPolicy,
        Transport as Transport,
    )
    from enqueue.enqueuer import (
        AsyncEnqueuer as AsyncEnqueuer,
        Enqueuer as Enqueuer,
        EnqueueResult as EnqueueResult,
    )
    from enqueue.errors import (
        AlreadyEnqueuedError as AlreadyEnqueuedError,
        ClientSetupError as ClientSetupError,
        EnqueueError as EnqueueError,
        EnqueueFailedError as EnqueueFailedError,
        LargeTaskWarning as LargeTaskWarning,
        OutputsError as OutputsError,
        TaskValidationError as TaskValidationError,
    )
    from enqueue.outputs import (
        StackOutputs as StackOutputs,
        UnknownOutputsWarning as UnknownOutputsWarning,
        load_outputs as load_outputs,
    )
    from enqueue.spec import (
        TaskSpec as TaskSpec,
        build_task as build_task,
        task_id_for_key as task_id_for_key,
    )

# Public name -> the module that defines it.
_HOMES = {
    "BulkItem": "enqueue.bulk",
    "BulkSummary": "enqueue.bulk",
    "TaskOutcome": "enqueue.bulk",
    "enqueue_many": "enqueue.bulk",
    "read_jsonl": "enqueue.bulk",
    "RetryPolicy": "enqueue.defaults",
    "Transport": "enqueue.defaults",
    "make_async_client": "enqueue.client",
    "make_client": "enqueue.client",
    "resolve_endpoint": "enqueue.client",
    "AsyncEnqueuer": "enqueue.enqueuer",
    "Enqueuer": "enqueue.enqueuer",
    "EnqueueResult": "enqueue.enqueuer",
    "AlreadyEnqueuedError": "enqueue.errors",
    "ClientSetupError": "enqueue.errors",
    "EnqueueError": "enqueue.errors",
    "EnqueueFailedError": "enqueue.errors",
    "LargeTaskWarning": "enqueue.errors",
    "OutputsError": "enqueue.errors",
    "TaskValidationError": "enqueue.errors",
    "StackOutputs": "enqueue.outputs",
    "UnknownOutputsWarning": "enqueue.outputs",
    "load_outputs": "enqueue.outputs",
    "TaskSpec": "enqueue.spec",
    "build_task": "enqueue.spec",
    "task_id_for_key": "enqueue.spec",
}

__all__ = sorted(_HOMES)


__getattr__ = lazy_exports("enqueue", _HOMES, globals())
