"""The stack's queues as the helper sees them, and the queue one task goes to.

A stack has one or more queues, each under a key (``default`` always exists). The
outputs ``queues`` ({key: full queue path}), ``routes`` ({task type: key}) and
``dispatch_deadlines`` ({key: "60s"}) say which they are; ``contract.routing`` says
which key a task type goes to. Outputs from a stack made before there were several
queues lack the three maps: they describe one queue, ``default`` = the ``queue``
output, whose deadline is the ``dispatch_deadline`` output.

Every inconsistency (a route naming a queue the outputs lack, ``queues.default``
not being ``queue``, a queue in another project) is an ``OutputsError`` when the
outputs are loaded, so nothing is ever sent from outputs that disagree with
themselves. A caller's queue override naming an unknown key is a
``TaskValidationError`` before that task's create call.

This module deliberately does not read files or call the API.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from contract.durations import DurationError, parse_formatted_duration
from contract.limits import MAX_DISPATCH_DEADLINE_S, MIN_DISPATCH_DEADLINE_S, QUEUE_ID_PATTERN
from contract.names import (
    OUTPUT_DISPATCH_DEADLINES,
    OUTPUT_QUEUE,
    OUTPUT_QUEUES,
    OUTPUT_ROUTES,
)
from contract.routing import DEFAULT_QUEUE_KEY, queue_for, queue_key_problem
from contract.task_types import task_type_problem
from enqueue.errors import OutputsError, TaskValidationError

"""The outputs that are JSON objects rather than strings."""

QUEUE_PATH = re.compile(
    rf"projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/queues/(?P<queue>{QUEUE_ID_PATTERN})"
)


@dataclass(frozen=True, slots=True)
class QueueTarget:
    """The queue one task goes to: its key, its full path and its default deadline."""

    key: str
    path: str
    deadline_s: int | None
    """The queue's `dispatch_deadlines` entry in seconds; None = Cloud Tasks' default."""


def deadline_seconds(name: str, text: str, source: str) -> int:
    """Whole seconds in a deadline output such as ``"600s"``, within the HTTP-target range."""
    seconds: int | None = None
    with contextlib.suppress(DurationError):
        value = parse_formatted_duration(text)
        seconds = int(value) if value.is_integer() else None
    if seconds is None or not MIN_DISPATCH_DEADLINE_S <= seconds <= MAX_DISPATCH_DEADLINE_S:
        raise OutputsError(
            f"{source}: output {name} must be whole seconds within "
            f"{MIN_DISPATCH_DEADLINE_S}s..{MAX_DISPATCH_DEADLINE_S}s like '600s', got "
            f"{text!r}: fix the value the stack exports"
        )
    return seconds


def check_queue_path(name: str, path: str, *, project: str, location: str, source: str) -> None:
    """A full queue path in ``project``/``location``, or an ``OutputsError`` naming the output."""
    match = QUEUE_PATH.fullmatch(path)
    if match is None:
        raise OutputsError(
            f"{source}: output {name} must be the full queue path "
            f"projects/P/locations/L/queues/Q (Q: letters, digits, '-', 1..100 chars), "
            f"got {path!r}: export the queue resource's id"
        )
    if match["project"] != project or match["location"] != location:
        raise OutputsError(
            f"{source}: output {name} {path!r} does not belong to project {project!r} / "
            f"location {location!r}: the stack exports inconsistent outputs"
        )


def _object(data: Mapping[str, Any], name: str, shape: str, source: str) -> dict[str, Any] | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise OutputsError(
            f"{source}: output {name} must be a JSON object {shape}, got {type(value).__name__}"
        )
    return dict(value)


def _string(name: str, value: object, source: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise OutputsError(f"{source}: output {name} must be a non-empty string, got {value!r}")
    return value.strip()


@dataclass(frozen=True, slots=True)
class StackQueues:
    """Every queue of the stack, the routes, and each queue's default deadline."""

    paths: Mapping[str, str]
    """Queue key -> full queue path; `default` is always present."""
    routes: Mapping[str, str]
    """Task type -> queue key; every key is in `paths`."""
    deadlines_s: Mapping[str, int]
    """Queue key -> default dispatch deadline in seconds (queues without one are absent)."""

    @classmethod
    def single(cls, queue: str, deadline_s: int | None) -> StackQueues:
        """The one queue of a stack whose outputs lack the maps."""
        deadlines = {} if deadline_s is None else {DEFAULT_QUEUE_KEY: deadline_s}
        return cls(
            MappingProxyType({DEFAULT_QUEUE_KEY: queue}),
            MappingProxyType({}),
            MappingProxyType(deadlines),
        )

    @classmethod
    def from_outputs(
        cls,
        data: Mapping[str, Any],
        *,
        queue: str,
        project: str,
        location: str,
        deadline_s: int | None,
        source: str,
    ) -> StackQueues:
        """Validate the three maps in ``data`` (each optional) against ``queue``.

        Raises:
            OutputsError: naming the map entry that is wrong and how to fix it.
        """
        paths = cls._paths(data, queue=queue, project=project, location=location, source=source)
        routes = cls._routes(data, paths, source)
        deadlines = {} if deadline_s is None else {DEFAULT_QUEUE_KEY: deadline_s}
        given = _object(data, OUTPUT_DISPATCH_DEADLINES, '{queue key: "60s"}', source) or {}
        for key, text in given.items():
            name = f"{OUTPUT_DISPATCH_DEADLINES}.{key}"
            if key not in paths:
                raise OutputsError(
                    f"{source}: output {name} names a queue the outputs lack (queues: "
                    f"{', '.join(paths)}): the stack exports inconsistent outputs"
                )
            deadlines[key] = deadline_seconds(name, _string(name, text, source), source)
        return cls(MappingProxyType(paths), MappingProxyType(routes), MappingProxyType(deadlines))

    @staticmethod
    def _paths(
        data: Mapping[str, Any], *, queue: str, project: str, location: str, source: str
    ) -> dict[str, str]:
        given = _object(data, OUTPUT_QUEUES, "{queue key: queue path}", source)
        if given is None:
            return {DEFAULT_QUEUE_KEY: queue}
        paths: dict[str, str] = {}
        owner: dict[str, str] = {}
        for key, value in given.items():
            problem = queue_key_problem(key)
            if problem is not None:
                raise OutputsError(f"{source}: output {OUTPUT_QUEUES}: {problem}")
            name = f"{OUTPUT_QUEUES}.{key}"
            path = _string(name, value, source)
            check_queue_path(name, path, project=project, location=location, source=source)
            if path in owner:
                raise OutputsError(
                    f"{source}: outputs {OUTPUT_QUEUES}.{owner[path]} and {name} are the same "
                    f"queue {path!r}: every key must name its own queue"
                )
            owner[path] = key
            paths[key] = path
        if paths.get(DEFAULT_QUEUE_KEY) != queue:
            raise OutputsError(
                f"{source}: output {OUTPUT_QUEUES}.{DEFAULT_QUEUE_KEY} must be the {OUTPUT_QUEUE} "
                f"output {queue!r}, got {paths.get(DEFAULT_QUEUE_KEY)!r}: the stack exports "
                "inconsistent outputs"
            )
        return paths

    @staticmethod
    def _routes(data: Mapping[str, Any], paths: Mapping[str, str], source: str) -> dict[str, str]:
        given = _object(data, OUTPUT_ROUTES, "{task type: queue key}", source) or {}
        routes: dict[str, str] = {}
        for task_type, value in given.items():
            problem = task_type_problem(task_type)
            if problem is not None:
                raise OutputsError(f"{source}: output {OUTPUT_ROUTES}: {problem}")
            name = f"{OUTPUT_ROUTES}.{task_type}"
            key = _string(name, value, source)
            if key not in paths:
                raise OutputsError(
                    f"{source}: output {name} routes {task_type!r} to queue {key!r}, which the "
                    f"outputs lack (queues: {', '.join(paths)}): redeploy the stack or "
                    "regenerate the outputs file; nothing was sent"
                )
            routes[task_type] = key
        return routes

    def target(self, task_type: str, queue: str | None = None) -> QueueTarget:
        """The queue for a task of ``task_type``: ``queue`` if given, else its route.

        Raises:
            TaskValidationError: ``queue`` is not a key of this stack.
        """
        key = queue if queue is not None else queue_for(task_type, self.routes)
        path = self.paths.get(key)
        if path is None:
            raise TaskValidationError(
                "queue",
                f"{key!r} is not a queue of this stack (its queues: {', '.join(self.paths)}): "
                f"pick one of those, or leave the queue out to use the route of {task_type!r}",
            )
        return QueueTarget(key=key, path=path, deadline_s=self.deadlines_s.get(key))

    def check_key(self, queue: str) -> None:
        """Raise ``TaskValidationError`` unless ``queue`` is a key of this stack."""
        if queue not in self.paths:
            raise TaskValidationError(
                "queue",
                f"{queue!r} is not a queue of this stack (its queues: "
                f"{', '.join(self.paths)}): pick one of those",
            )
