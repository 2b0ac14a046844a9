"""App Engine targets: where an ``AppEngineHttpRequest`` task goes locally, and what it carries.

On Google an App Engine task is delivered to the app of the queue's project at
``url = AppEngineRouting.host + relative_uri`` (target.proto), the routing being
the queue's ``app_engine_routing_override`` when set, else the task's own. The
output-only ``host`` is built as target.proto describes it:
``[instance.][version.][service.]`` + the app's domain (``PROJECT.appspot.com``).

Locally there is no appspot.com: :class:`AppEngineHosts` (``--app-engine-host
[SERVICE=]URL``, repeatable) maps the routing's service to a base URL, as a local
App Engine server runs each service on its own port; a bare URL takes every
other service. The request carries the App Engine headers
(https://cloud.google.com/tasks/docs/creating-appengine-handlers#reading_request_headers):
``X-AppEngine-QueueName``, ``-TaskName``, ``-TaskRetryCount``,
``-TaskExecutionCount``, ``-TaskETA`` always, ``-TaskPreviousResponse`` on a
retry after an HTTP answer; its ``User-Agent`` is the task's with
``AppEngine-Google; (+http://code.google.com/appengine)`` appended, and a body
gets ``Content-Type: application/octet-stream`` unless the task sets one.

It deliberately validates no request (emulator/validation.py does) and signs
no token: App Engine tasks carry none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import grpc

from emulator import validation as v
from emulator.delivery import OutboundRequest
from emulator.errors import ApiError
from emulator.state import TaskState, get_time

APP_ENGINE_USER_AGENT: Final = "AppEngine-Google; (+http://code.google.com/appengine)"
DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"
HEADER_QUEUE_NAME: Final = "X-AppEngine-QueueName"
HEADER_TASK_NAME: Final = "X-AppEngine-TaskName"
HEADER_RETRY_COUNT: Final = "X-AppEngine-TaskRetryCount"
HEADER_EXECUTION_COUNT: Final = "X-AppEngine-TaskExecutionCount"
HEADER_ETA: Final = "X-AppEngine-TaskETA"
HEADER_PREVIOUS_RESPONSE: Final = "X-AppEngine-TaskPreviousResponse"
APP_DOMAIN: Final = "appspot.com"


@dataclass(frozen=True)
class AppEngineHosts:
    """Base URLs App Engine tasks are delivered to: one per service, and a default."""

    default: str | None = None
    services: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, values: list[str] | tuple[str, ...]) -> AppEngineHosts:
        """From ``--app-engine-host`` values, ``URL`` or ``SERVICE=URL``; ValueError
        with what to write instead."""
        default: str | None = None
        services: dict[str, str] = {}
        for value in values:
            head = value.split("://", 1)[0]
            service, sep, url = value.partition("=") if "=" in head else ("", "", value)
            url = url.rstrip("/")
            parts = urlsplit(url)
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or parts.path
                or parts.query
                or parts.fragment
            ):
                raise ValueError(
                    f"--app-engine-host {value!r}: expected [SERVICE=]http://HOST:PORT "
                    "(a base URL without a path), e.g. http://127.0.0.1:8080 or "
                    "worker=http://127.0.0.1:8081"
                )
            if sep:
                if not v.APP_ENGINE_ID_RE.fullmatch(service):
                    raise ValueError(
                        f"--app-engine-host {value!r}: {service!r} is not an App Engine "
                        "service id (letters, digits and hyphens)"
                    )
                services[service] = url
            else:
                default = url
        return cls(default, services)

    def base_url(self, service: str) -> str | None:
        return self.services.get(service or "default", self.default)

    def describe(self) -> str:
        mapped = [f"{s}={u}" for s, u in sorted(self.services.items())]
        return ", ".join(([self.default] if self.default else []) + mapped) or "none"


def routing_host(project: str, routing: Any) -> str:
    """AppEngineRouting.host as target.proto builds it from service, version, instance."""
    labels = [x for x in (routing.instance, routing.version, routing.service) if x]
    return ".".join([*labels, f"{project}.{APP_DOMAIN}"])


def _project(queue_name: str) -> str:
    return queue_name.split("/")[1]


def fill_queue_routing_host(queue_pb: Any) -> None:
    """Set the output-only host of a queue's ``app_engine_routing_override``."""
    if queue_pb.HasField("app_engine_routing_override"):
        override = queue_pb.app_engine_routing_override
        override.host = routing_host(_project(queue_pb.name), override)


def effective_routing(task_routing: Any, queue_pb: Any) -> Any:
    """The routing a task is sent with: the queue's override when set, else the task's."""
    if queue_pb.HasField("app_engine_routing_override"):
        return queue_pb.app_engine_routing_override
    return task_routing


def fill_task_routing(request: Any, queue_pb: Any) -> None:
    """A new task's ``app_engine_routing``: the one it is sent with, host filled in."""
    routing = request.app_engine_routing
    routing.CopyFrom(effective_routing(routing, queue_pb))
    routing.host = routing_host(_project(queue_pb.name), routing)


def build_request(ts: TaskState, retry_count: int, hosts: AppEngineHosts) -> OutboundRequest:
    """The request of attempt ``retry_count + 1``; ApiError when no local host serves
    the task's service (the attempt then fails with that message)."""
    pb = ts.pb
    req = pb.app_engine_http_request
    routing = effective_routing(req.app_engine_routing, ts.queue.pb)
    base = hosts.base_url(routing.service)
    if base is None:
        service = routing.service or "default"
        raise ApiError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"No local App Engine host for service {service!r} (configured: "
            f"{hosts.describe()}): start the emulator with --app-engine-host URL "
            f"or --app-engine-host {service}=URL",
        )
    method = v.METHOD_NAMES.get(req.http_method, "POST")
    url = base + (req.relative_uri or "/")
    headers = {k: val for k, val in req.headers.items() if not v.is_reserved_header(k)}
    own_agent = next((val for k, val in req.headers.items() if k.lower() == "user-agent"), "")
    headers["User-Agent"] = f"{own_agent} {APP_ENGINE_USER_AGENT}".strip()
    body = bytes(req.body) if method in v.APP_ENGINE_BODY_METHODS else b""
    if body and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = DEFAULT_CONTENT_TYPE
    headers[HEADER_QUEUE_NAME] = ts.queue.name.rsplit("/", 1)[1]
    headers[HEADER_TASK_NAME] = ts.name.rsplit("/", 1)[1]
    headers[HEADER_RETRY_COUNT] = str(retry_count)
    headers[HEADER_EXECUTION_COUNT] = str(ts.execution_count)
    headers[HEADER_ETA] = f"{get_time(pb.schedule_time):.6f}"
    if ts.previous_response is not None and retry_count > 0:
        headers[HEADER_PREVIOUS_RESPONSE] = str(ts.previous_response)
    return OutboundRequest(method, url, headers, body)
