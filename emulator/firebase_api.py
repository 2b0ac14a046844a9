"""firebase-admin's task-queue protocol: what ``functions.task_queue(...)`` sends to an emulator.

With ``CLOUD_TASKS_EMULATOR_HOST=HOST:PORT`` set, firebase-admin (7.x, Python and
Node) does not call Google's ``/v2/`` REST API but the Firebase emulator's own shape,
which this module serves from the same core as gRPC and REST:

* ``POST http://HOST:PORT/projects/P/locations/L/queues/FUNCTION/tasks`` with
  ``{"task": {"httpRequest": {"url", "oidcToken", "body", "headers"}, "name",
  "scheduleTime", "dispatchDeadline"}}`` (camelCase, unset fields as ``null``);
  the answer is ``{"task": {"name": "/projects/.../tasks/ID", ...}}``: the name
  carries a leading ``/``, which the SDK strips (the Firebase emulator's quirk);
* ``DELETE http://HOST:PORT/projects/P/locations/L/queues/FUNCTION/tasks/ID``,
  answered ``{}``.

The queue is the function's: it must exist (CreateQueue, ``--queue`` or
``--queues-file``), as Firebase's deploy creates it in production. The SDK sends
an empty ``url`` unless the caller passed ``TaskOptions(uri=...)``; such a task
goes to ``--functions-url BASE`` + ``/P/L/FUNCTION``, the path the Firebase
Functions emulator serves a function at. Errors use Google's error JSON, which
the SDK maps to its exceptions (``AlreadyExistsError``, ``NotFoundError``, ...).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from google.cloud import tasks_v2
from google.protobuf import json_format

from emulator.core import Emulator
from emulator.errors import invalid, not_found
from emulator.rest_json import check_json_document

# The path after the leading "/" (rest_api routes "/projects/{path}" here).
_TASKS: Final = re.compile(r"(projects/([^/]+)/locations/([^/]+)/queues/([^/:]+))/tasks")
_TASK: Final = re.compile(r"(projects/[^/]+/locations/[^/]+/queues/[^/:]+/tasks/[^/:]+)")
_TaskPb: Final = tasks_v2.Task.pb()


def _drop_nulls(value: Any) -> Any:
    """The SDK sends every unset option as ``null``; protobuf JSON wants them absent."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    return value


def _task_document(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise invalid(f"Invalid JSON payload received. {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("task"), dict):
        raise invalid('The request body must be {"task": {...}}, as firebase-admin sends it')
    task: dict[str, Any] = _drop_nulls(document["task"])
    return task


def _function_url(functions_url: str | None, project: str, location: str, function: str) -> str:
    if functions_url is None:
        raise invalid(
            "The task has no httpRequest.url: start the emulator with --functions-url "
            "http://HOST:PORT (the Firebase Functions emulator) or pass "
            "TaskOptions(uri=...) to enqueue"
        )
    return f"{functions_url.rstrip('/')}/{project}/{location}/{function}"


def enqueue(emulator: Emulator, functions_url: str | None, path: str, body: bytes) -> Any:
    """``POST /projects/.../queues/FUNCTION/tasks``: create the task, answer its name."""
    match = _TASKS.fullmatch(path)
    if match is None:
        raise not_found(f"No Firebase task-queue resource at POST /{path}")
    queue, project, location, function = match.groups()
    if queue not in emulator.queues:
        raise not_found(
            f"Queue {queue} does not exist: Firebase's deploy creates a function's queue, "
            f"here create it first (CreateQueue, or start the emulator with --queue {queue})"
        )
    document = _task_document(body)
    task = _TaskPb()
    check_json_document(document, task.DESCRIPTOR)  # an ApiError naming the field
    try:
        json_format.ParseDict(document, task)
    except json_format.ParseError as exc:
        raise invalid(f"Invalid task in the request body. {exc}") from None
    if task.HasField("http_request") and not task.http_request.url:
        task.http_request.url = _function_url(functions_url, project, location, function)
    created = emulator.create_task(tasks_v2.CreateTaskRequest.pb()(parent=queue, task=task))
    answer = json_format.MessageToDict(created)
    answer["name"] = "/" + created.name  # the Firebase emulator's leading "/" the SDK strips
    return {"task": answer}


def delete(emulator: Emulator, path: str) -> dict[str, Any]:
    """``DELETE /projects/.../queues/FUNCTION/tasks/ID``: delete the task, answer ``{}``."""
    match = _TASK.fullmatch(path)
    if match is None:
        raise not_found(f"No Firebase task-queue resource at DELETE /{path}")
    emulator.delete_task(tasks_v2.DeleteTaskRequest.pb()(name=match.group(1)))
    return {}
