"""Tasks and queues of a stack, as operators see them: list, show, cancel, pause,
resume, purge.

Every call goes to the queues of the stack outputs (`enqueue.queues`), through the
client the enqueue helper builds (`enqueue.client.make_client`: Google's API, or the
emulator of `CLOUD_TASKS_EMULATOR_HOST` / the outputs' `emulator_host`), so a deployed
stack and the local one answer the same commands with the same output. Tasks are read
with the FULL view (bodies need `cloudtasks.tasks.fullView`, which `roles/cloudtasks.viewer`
holds). An API failure is an `EnqueueFailedError` whose one line says what to do.

This module deliberately does not print: `ops.cli` does, from the dicts built here.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import tasks_v2

from contract.resources import (
    CLOUDTASKS_QUEUE_ADMIN_ROLE,
    CLOUDTASKS_TASK_DELETER_ROLE,
    CLOUDTASKS_VIEWER_ROLE,
)
from enqueue.client import make_client, resolve_endpoint
from enqueue.defaults import Transport
from enqueue.errors import EnqueueFailedError, NotFoundError, TaskValidationError
from enqueue.outputs import StackOutputs
from enqueue.spec import task_id_for_key, validate_task_id
from ops.bodies import decoded_body

FULL_VIEW = tasks_v2.Task.View.FULL
CALL_TIMEOUT_S = 30.0
# Which role each kind of call needs, for the PERMISSION_DENIED hint.
_ROLE_FOR = {
    "read": CLOUDTASKS_VIEWER_ROLE,
    "delete": CLOUDTASKS_TASK_DELETER_ROLE,
    "queue": CLOUDTASKS_QUEUE_ADMIN_ROLE,
}


def _time(value: datetime | None) -> str | None:
    # proto-plus gives an epoch datetime for an unset timestamp.
    if value is None or value.timestamp() == 0:
        return None
    return value.isoformat().replace("+00:00", "Z")


def _attempt(attempt: tasks_v2.Attempt | None) -> dict[str, Any] | None:
    if attempt is None or not tasks_v2.Attempt.pb(attempt).ByteSize():
        return None
    status = None
    if tasks_v2.Attempt.pb(attempt).HasField("response_status"):
        status = {"code": attempt.response_status.code, "message": attempt.response_status.message}
    return {
        "schedule_time": _time(attempt.schedule_time),
        "dispatch_time": _time(attempt.dispatch_time),
        "response_time": _time(attempt.response_time),
        "response_status": status,
    }


def task_view(task: tasks_v2.Task, queue_key: str) -> dict[str, Any]:
    """A task as the commands show it: body decoded, attempt history, times in RFC 3339."""
    request = task.http_request
    body, encoding = decoded_body(bytes(request.body))
    deadline = task.dispatch_deadline
    return {
        "name": task.name,
        "id": task.name.rsplit("/", 1)[-1],
        "queue": queue_key,
        "url": request.url,
        "method": tasks_v2.HttpMethod(request.http_method).name,
        "headers": dict(request.headers),
        "body": body,
        "body_encoding": encoding,
        "body_bytes": len(request.body),
        "schedule_time": _time(task.schedule_time),
        "create_time": _time(task.create_time),
        "dispatch_deadline_s": deadline.total_seconds() if deadline else None,
        "dispatch_count": task.dispatch_count,
        "response_count": task.response_count,
        "first_attempt": _attempt(task.first_attempt),
        "last_attempt": _attempt(task.last_attempt),
    }


class Operations:
    """The Cloud Tasks calls of the ops commands, on the queues of one stack."""

    def __init__(self, outputs: StackOutputs, *, transport: Transport = "grpc") -> None:
        self.outputs = outputs
        self.queues = outputs.stack_queues
        self._endpoint = resolve_endpoint(outputs).describe(transport)
        self._client = make_client(outputs, transport)

    def close(self) -> None:
        self._client.transport.close()  # type: ignore[no-untyped-call]

    def queue_path(self, key: str) -> str:
        self.queues.check_key(key)  # TaskValidationError naming the stack's queues
        return self.queues.paths[key]

    def _keys(self, key: str | None) -> list[str]:
        if key is not None:
            self.queue_path(key)
            return [key]
        return list(self.queues.paths)

    def _call_failed(self, exc: Exception, what: str, kind: str, target: str) -> Exception:
        if isinstance(exc, gexc.RetryError) and exc.cause is not None:
            exc = exc.cause
        if isinstance(exc, gexc.PermissionDenied):
            message = (
                f"permission denied to {what} (PERMISSION_DENIED: {exc.message}): the caller "
                f"needs {_ROLE_FOR[kind]} on the queue (stack config operators)"
            )
        elif isinstance(exc, gexc.Unauthenticated):
            message = (
                f"not authenticated to the {self._endpoint} ({exc.message}): run "
                "`gcloud auth application-default login`"
            )
        elif isinstance(exc, gexc.GoogleAPICallError):
            code = exc.grpc_status_code.name if exc.grpc_status_code else exc.code
            message = f"could not {what}: the {self._endpoint} answered {code} ({exc.message})"
        else:
            message = f"could not {what} on the {self._endpoint}: {type(exc).__name__}: {exc}"
        return EnqueueFailedError(message, name=target, attempts=1)

    # --- tasks --------------------------------------------------------------------------

    def list_tasks(
        self, key: str | None = None, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Tasks of one queue (or every queue, in key order), at most ``limit`` in all."""
        shown = 0
        for queue_key in self._keys(key):
            path = self.queues.paths[queue_key]
            request = tasks_v2.ListTasksRequest(parent=path, response_view=FULL_VIEW)
            try:
                for task in self._client.list_tasks(request=request, timeout=CALL_TIMEOUT_S):
                    if limit is not None and shown >= limit:
                        return
                    shown += 1
                    yield task_view(task, queue_key)
            except gexc.GoogleAPICallError as exc:
                raise self._call_failed(exc, f"list the tasks of {path}", "read", path) from None

    def find_task(self, name: str) -> tuple[str, tasks_v2.Task]:
        """The task ``name`` (full name, or an id looked up in every queue) and its queue key."""
        for queue_key, path in self._candidates(name):
            task_name = f"{path}/tasks/{name.rsplit('/', 1)[-1]}"
            request = tasks_v2.GetTaskRequest(name=task_name, response_view=FULL_VIEW)
            try:
                return queue_key, self._client.get_task(request=request, timeout=CALL_TIMEOUT_S)
            except gexc.NotFound:
                continue
            except gexc.GoogleAPICallError as exc:
                raise self._call_failed(exc, f"read task {task_name}", "read", task_name) from None
        where = ", ".join(key for key, _ in self._candidates(name))
        raise NotFoundError(
            f"no task {name} in the stack's queues ({where}): it ran, was cancelled or never "
            "existed; `tasks list` shows the tasks waiting",
            name=name,
            attempts=1,
        )

    def _candidates(self, name: str) -> list[tuple[str, str]]:
        if "/tasks/" in name:
            path, _, task_id = name.rpartition("/tasks/")
            validate_task_id(task_id)
            for key, queue_path in self.queues.paths.items():
                if queue_path == path:
                    return [(key, path)]
            raise TaskValidationError(
                "name",
                f"{name!r} is not in a queue of this stack (its queues: "
                f"{', '.join(self.queues.paths.values())}): check --stack/--outputs",
            )
        validate_task_id(name)
        return list(self.queues.paths.items())

    def show_task(self, name: str) -> dict[str, Any]:
        queue_key, task = self.find_task(name)
        return task_view(task, queue_key)

    def cancel_task(self, name: str) -> str:
        """Delete the task ``name`` (an id or full name); returns its full name."""
        _, task = self.find_task(name)
        try:
            self._client.delete_task(name=task.name, timeout=CALL_TIMEOUT_S)
        except gexc.NotFound:
            raise NotFoundError(
                f"task {task.name} finished or was deleted meanwhile: nothing to cancel",
                name=task.name,
                attempts=1,
            ) from None
        except gexc.GoogleAPICallError as exc:
            raise self._call_failed(exc, f"cancel {task.name}", "delete", task.name) from None
        return str(task.name)

    def task_name_for_key(self, task_type: str, key: str) -> str:
        """The full name the enqueue helper gives a ``task_type`` task with idempotency ``key``."""
        target = self.outputs.target(task_type)
        return self.outputs.task_path(task_id_for_key(task_type, key), target.path)

    # --- queues -------------------------------------------------------------------------

    def change_queue(self, key: str, action: str) -> str:
        """``pause``, ``resume`` or ``purge`` the queue ``key``; returns its state after."""
        path = self.queue_path(key)
        call = {
            "pause": self._client.pause_queue,
            "resume": self._client.resume_queue,
            "purge": self._client.purge_queue,
        }[action]
        try:
            queue = call(name=path, timeout=CALL_TIMEOUT_S)
        except gexc.GoogleAPICallError as exc:
            raise self._call_failed(exc, f"{action} queue {path}", "queue", path) from None
        return str(tasks_v2.Queue.State(queue.state).name)
