"""Which queue each task may arrive on: `TASKS_QUEUES` and `TASKS_ROUTES`, and the check.

The Pulumi program (and the local stack) give the worker two JSON objects:
`TASKS_QUEUES` = {queue key: queue id (the last segment of its path)} and
`TASKS_ROUTES` = {task type: queue key}; a type without a route belongs on the
`default` queue (`contract.routing`). Cloud Tasks names the queue a delivery came
from in `X-CloudTasks-QueueName` (the queue id), so the worker can tell which key
it arrived on, log that key with the task, and refuse a task that arrived on a
queue its route does not name: a producer that bypasses the routes (an old
client, a hand-written `CreateTask`) then shows up as dead letters naming the
type, the queue it came on and the queue its route names, instead of silently
running at another queue's rate and retry policy. The one exception is the
built-in `smoke` type, accepted on every queue of the stack: the smoke test
sends one through each queue to prove it end to end.

Without `TASKS_QUEUES` the worker serves a single-queue stack and checks nothing.
Malformed values fail closed: the worker refuses to start (`QueueRoutingError`,
reported by `service.config` as a `ConfigError` naming the variable).

This module deliberately does not dead-letter or log: it only decides
(`service.delivery` acts on the answer).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from contract.limits import QUEUE_ID_PATTERN
from contract.names import (
    HEADER_QUEUE_NAME,
    SMOKE_TASK_TYPE,
    WORKER_ENV_QUEUES,
    WORKER_ENV_ROUTES,
)
from contract.routing import DEFAULT_QUEUE_KEY, queue_for, queue_key_problem
from contract.task_types import task_type_problem

_QUEUE_ID: Final = re.compile(QUEUE_ID_PATTERN)


class QueueRoutingError(ValueError):
    """`TASKS_QUEUES` or `TASKS_ROUTES` cannot be used; the message names the variable."""


@dataclass(frozen=True, slots=True)
class QueueRouting:
    """The stack's queues (key -> queue id) and routes (task type -> key)."""

    queue_ids: Mapping[str, str]
    routes: Mapping[str, str]

    def key_of(self, queue_id: str | None) -> str | None:
        """The key of the queue whose id is `queue_id`; None for an unknown or absent id."""
        if queue_id is None:
            return None
        for key, known in self.queue_ids.items():
            if known == queue_id:
                return key
        return None

    def misroute(
        self, task_type: str, queue_id: str | None, override: str | None = None
    ) -> str | None:
        """Why a task of `task_type` that arrived on `queue_id` is refused, or None.

        `override`: the queue key the producer chose on purpose (`X-Tasks-Queue-Override`,
        set by `python -m enqueue --queue KEY`); a task that arrived on that queue is
        accepted, one that arrived elsewhere is still refused."""
        route = queue_for(task_type, self.routes)
        expected = f"{route!r} (queue {self.queue_ids[route]})"
        if queue_id is None:
            return (
                f"misrouted task: type {task_type!r} arrived without {HEADER_QUEUE_NAME}, "
                f"so not through a queue; its route names queue {expected}"
            )
        arrived = self.key_of(queue_id)
        if arrived is not None and arrived in (route, override):
            return None
        if task_type == SMOKE_TASK_TYPE and arrived is not None:
            return None  # the smoke test proves every queue with one smoke task each
        came_on = f"{arrived!r} (queue {queue_id})" if arrived else f"{queue_id!r}, not a queue"
        where = "" if arrived else f" of this stack ({', '.join(self.queue_ids)})"
        return (
            f"misrouted task: type {task_type!r} arrived on queue {came_on}{where}; its route "
            f"names queue {expected}: enqueue it with the routes (python -m enqueue does)"
        )


def _object(name: str, raw: str) -> dict[str, object]:
    if not raw.strip():
        raise QueueRoutingError(
            f"{name} is set but empty: give the JSON object the stack sets, or unset "
            f"{WORKER_ENV_QUEUES} and {WORKER_ENV_ROUTES} for a single-queue stack"
        )
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise QueueRoutingError(
            f"{name} is not valid JSON ({exc.msg} at column {exc.colno}): give a JSON object "
            "as the stack sets it"
        ) from None
    if not isinstance(value, dict):
        raise QueueRoutingError(
            f"{name} must be a JSON object, got {type(value).__name__}: give it as the stack "
            "sets it"
        )
    return value


def _queue_ids(raw: str) -> dict[str, str]:
    queues = _object(WORKER_ENV_QUEUES, raw)
    ids: dict[str, str] = {}
    for key, queue_id in queues.items():
        problem = queue_key_problem(key)
        if problem is not None:
            raise QueueRoutingError(f"{WORKER_ENV_QUEUES}: {problem}")
        if not isinstance(queue_id, str) or _QUEUE_ID.fullmatch(queue_id) is None:
            raise QueueRoutingError(
                f"{WORKER_ENV_QUEUES}.{key} must be a queue id (the last segment of the queue "
                f"path: letters, digits, '-', 1..100 chars), got {queue_id!r}"
            )
        if queue_id in ids.values():
            raise QueueRoutingError(
                f"{WORKER_ENV_QUEUES}: queue id {queue_id!r} is given for two keys: every key "
                "names its own queue"
            )
        ids[key] = queue_id
    if DEFAULT_QUEUE_KEY not in ids:
        raise QueueRoutingError(
            f"{WORKER_ENV_QUEUES} has no {DEFAULT_QUEUE_KEY!r} queue: every stack has one, "
            "where types without a route go"
        )
    return ids


def _routes(raw: str, ids: Mapping[str, str]) -> dict[str, str]:
    routes: dict[str, str] = {}
    for task_type, key in _object(WORKER_ENV_ROUTES, raw).items():
        problem = task_type_problem(task_type)
        if problem is not None:
            raise QueueRoutingError(f"{WORKER_ENV_ROUTES}: {problem}")
        if not isinstance(key, str) or key not in ids:
            raise QueueRoutingError(
                f"{WORKER_ENV_ROUTES}.{task_type} names queue {key!r}, which "
                f"{WORKER_ENV_QUEUES} lacks ({', '.join(ids)}): set both from the same stack"
            )
        routes[task_type] = key
    return routes


def parse_queue_routing(queues: str | None, routes: str | None) -> QueueRouting | None:
    """The routing from the two variables' values; None (no check) without `TASKS_QUEUES`.

    Raises:
        QueueRoutingError: malformed JSON, a bad key or id, a route to an unknown
            queue, or `TASKS_ROUTES` without `TASKS_QUEUES`.
    """
    if queues is None:
        if routes is not None:
            raise QueueRoutingError(
                f"{WORKER_ENV_ROUTES} is set but {WORKER_ENV_QUEUES} is not: the routes name "
                f"queue keys, so set {WORKER_ENV_QUEUES} too (or unset both for one queue)"
            )
        return None
    ids = _queue_ids(queues)
    table = _routes(routes, ids) if routes is not None else {}
    return QueueRouting(MappingProxyType(ids), MappingProxyType(table))
