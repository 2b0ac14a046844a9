"""BufferTask (REST only): ``POST /v2[beta3]/QUEUE/tasks[/TASK_ID]:buffer``.

Google's "buffer HTTP requests" API creates a task without a Task message: the
request's own body (any Content-Type, sent as it is, the HttpBody rule of gRPC
transcoding) becomes the task's body, and everything else comes from the
queue's ``http_target``: the URL from its ``uri_override``, the method from its
``http_method`` (POST when unset), and at dispatch its header overrides and
OIDC token, as for every task of such a queue (emulator/request.py). The answer
is ``{"task": Task}``. The queue must have an HTTP target with a host;
otherwise FAILED_PRECONDITION says so. Google's Python and Node clients have no
BufferTask method (callers post to the URL themselves, as
python-docs-samples' ``send_task_to_http_queue`` does), so there is no gRPC method.

The task is made by the version's own CreateTask, so every CreateTask rule
(names, tombstones, sizes, URLs, a body on GET) applies unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emulator.core import Emulator
from emulator.errors import failed_precondition
from emulator.request import override_uri

Call = Callable[[Emulator, Any], Any]


def buffer_task(
    emulator: Emulator,
    types: Any,
    call: Callable[[str], Call],
    queue: str,
    task_id: str | None,
    body: bytes,
    content_type: str | None,
) -> Any:
    """The created task (the version's Task message); ``call(method)`` is the version's RPC."""
    get_queue, create_task = call("GetQueue"), call("CreateTask")
    q = get_queue(emulator, types.GetQueueRequest.pb()(name=queue))
    target = q.http_target if q.HasField("http_target") else None
    if target is None or not target.uri_override.host:
        raise failed_precondition(
            f"Queue {queue} has no HTTP target: BufferTask needs the queue's "
            "httpTarget.uriOverride (at least its host) to know where the task goes"
        )
    req = types.CreateTaskRequest.pb()(parent=queue)
    if task_id:
        req.task.name = f"{queue}/tasks/{task_id}"
    http = req.task.http_request
    http.url = override_uri("", target.uri_override)
    http.http_method = target.http_method or types.HttpMethod.POST
    if content_type:
        http.headers["Content-Type"] = content_type
    if body:
        http.body = body
    return create_task(emulator, req)
