"""The REST front end: Google's ``/v2/...`` paths, the OIDC issuer and admin routes.

One Starlette app serves, on the emulator's HTTP port:

* the Cloud Tasks v2 REST API at the same paths and verbs as
  ``cloudtasks.googleapis.com``, and v2beta3 at ``/v2beta3/...`` through the
  translation of emulator/v2beta3.py (camelCase JSON via ``google.protobuf.json_format``,
  enums as names or integers, bytes as base64, durations as ``"30s"``, and
  Google's error JSON), delegating to the same :class:`Emulator` as gRPC;
* the OIDC discovery document and signing keys (``/oauth2/v1/certs`` PEM map,
  ``/oauth2/v3/certs`` JWKS), and the OAuth token endpoint ``POST /token``
  (emulator/oauth_token.py) that service-account credentials refresh against;
* emulator-only admin endpoints under ``/emulator/v1/``;
* ``/metrics``: the queue signals in Prometheus text (emulator/metrics.py);
* firebase-admin's task-queue calls at ``/projects/...`` (no ``/v2/``), the
  Firebase emulator's shape (emulator/firebase_api.py);
* the inspector page at ``/inspector`` and its JSON under ``/emulator/v1/inspector/``
  (emulator/inspector.py).

BufferTask (``.../tasks:buffer``) takes the raw body as the task's (emulator/buffer.py).
It deliberately does not implement the Locations API, batch methods or
long-running operations.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import grpc
from google.cloud import tasks_v2, tasks_v2beta3
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from contract.durations import DurationError, parse_duration_s
from emulator import buffer, firebase_api, metrics as prometheus, oauth_token, v2beta3
from emulator.core import Emulator
from emulator.errors import ApiError, invalid, unimplemented
from emulator.http_guard import TOKEN_PATH, HostOriginGuard
from emulator.inspector import Inspector
from emulator.rest_json import check_json_document, check_query_enum

log = logging.getLogger("emulator.rest")

MAX_REQUEST_BYTES: Final = 4 * 1024 * 1024
# System parameters every Google REST API accepts and the client may send.
_SYSTEM_PARAMS: Final = frozenset(
    {"$alt", "alt", "prettyPrint", "$prettyPrint", "fields", "$fields", "key", "quotaUser"}
)

_P = r"projects/[^/]+/locations/[^/]+"
_Q = _P + r"/queues/[^/:]+"
_T = _Q + r"/tasks/[^/:]+"


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    request_type: Any  # proto-plus request class
    path_field: str  # "name", "parent" or "queue.name"
    body: str | None  # None, "*" or the request field that takes the body
    call: Callable[[Emulator, Any], Any] | None  # None: UNIMPLEMENTED


_IAM_MESSAGE = (
    "IAM policies are not emulated by the Cloud Tasks emulator: every caller may "
    "create and run tasks. Test IAM wiring with the Pulumi plan instead."
)


def _routes(t: Any, calls: Callable[[str], Callable[[Emulator, Any], Any]]) -> list[_Route]:
    """One API version's routes: ``t`` its types module, ``calls(method)`` the core call."""

    def r(method: str, pattern: str, req: Any, path_field: str, body: str | None) -> _Route:
        call = calls(req.__name__.removesuffix("Request"))
        return _Route(method, re.compile(pattern), req, path_field, body, call)

    return [
        r("POST", rf"({_P})/queues", t.CreateQueueRequest, "parent", "queue"),
        r("GET", rf"({_P})/queues", t.ListQueuesRequest, "parent", None),
        r("GET", rf"({_Q})", t.GetQueueRequest, "name", None),
        r("PATCH", rf"({_Q})", t.UpdateQueueRequest, "queue.name", "queue"),
        r("DELETE", rf"({_Q})", t.DeleteQueueRequest, "name", None),
        r("POST", rf"({_Q}):purge", t.PurgeQueueRequest, "name", "*"),
        r("POST", rf"({_Q}):pause", t.PauseQueueRequest, "name", "*"),
        r("POST", rf"({_Q}):resume", t.ResumeQueueRequest, "name", "*"),
        r("GET", rf"({_Q})/tasks", t.ListTasksRequest, "parent", None),
        r("POST", rf"({_Q})/tasks", t.CreateTaskRequest, "parent", "*"),
        r("GET", rf"({_T})", t.GetTaskRequest, "name", None),
        r("DELETE", rf"({_T})", t.DeleteTaskRequest, "name", None),
        r("POST", rf"({_T}):run", t.RunTaskRequest, "name", "*"),
    ]


def _snake(method: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", method).lower()


def _v2_call(method: str) -> Callable[[Emulator, Any], Any]:
    fn: Callable[[Emulator, Any], Any] = getattr(Emulator, _snake(method))
    return fn


def _v2beta3_call(method: str) -> Callable[[Emulator, Any], Any]:
    return v2beta3.call(_snake(method))


# Each version's types module and calls, and its routes, by the path prefix that selects them.
_API: Final = {"v2": (tasks_v2, _v2_call), "v2beta3": (tasks_v2beta3, _v2beta3_call)}
_VERSIONS: Final = {version: _routes(t, calls) for version, (t, calls) in _API.items()}
# BufferTask: the raw request body is the task's (emulator/buffer.py), so no JSON route.
_BUFFER: Final = re.compile(rf"({_Q})/tasks(?:/([^/:]+))?:buffer")
_UNIMPLEMENTED: Final = [
    (re.compile(rf"{_Q}:(getIamPolicy|setIamPolicy|testIamPermissions)"), _IAM_MESSAGE),
    (
        re.compile(rf"{_Q}/tasks:(batchCreate|batchDelete)"),
        "Batch task methods are not emulated: call CreateTask / DeleteTask per task.",
    ),
]


def _query_value(fd: FieldDescriptor, raw: str) -> Any:
    if fd.type == FieldDescriptor.TYPE_ENUM:
        value = int(raw) if raw.lstrip("-").isdigit() else raw
        check_query_enum(fd, value)
        return value
    if fd.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
        try:
            return int(raw)
        except ValueError as exc:
            raise invalid(
                f"Query parameter {fd.json_name} must be an integer; got {raw!r}"
            ) from exc
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return raw.lower() == "true"
    return raw


def _build_request(route: _Route, path_value: str, request: Request, body: bytes) -> Any:
    pb = route.request_type.pb()()
    if route.body is not None and body.strip():
        target = pb if route.body == "*" else getattr(pb, route.body)
        try:
            document = json.loads(body)
            check_json_document(document, target.DESCRIPTOR)
            json_format.Parse(body, target)
        except ApiError:
            raise
        except Exception as exc:  # ParseError, or a non-object JSON document
            raise invalid(f"Invalid JSON payload received. {exc}") from exc
    elif route.body is None and body.strip():
        raise invalid(f"{route.method} {request.url.path} takes no request body")
    query: dict[str, Any] = {}
    fields = pb.DESCRIPTOR.fields_by_camelcase_name
    for key, raw in request.query_params.multi_items():
        if key in _SYSTEM_PARAMS:
            continue
        fd = fields.get(key) or pb.DESCRIPTOR.fields_by_name.get(key)
        if fd is None:
            raise invalid(f"Unknown query parameter {key!r} for this method")
        query[fd.json_name] = _query_value(fd, raw)
    if query:
        try:
            json_format.ParseDict(query, pb)
        except Exception as exc:
            raise invalid(f"Invalid query parameters: {exc}") from exc
    head, _, tail = route.path_field.partition(".")
    if tail:
        setattr(getattr(pb, head), tail, path_value)
    else:
        setattr(pb, head, path_value)
    return pb


def _advance_arguments(body: bytes) -> tuple[float, float]:
    """``{"seconds": 3600 | "1h", "waitSeconds": 30}`` of ``POST /emulator/v1/clock:advance``."""
    usage = 'expected a JSON object like {"seconds": 3600} or {"seconds": "1h"}'
    try:
        document = json.loads(body or b"null")
    except ValueError:
        document = None
    if not isinstance(document, dict) or "seconds" not in document:
        raise invalid(f"Invalid clock:advance body: {usage}")
    unknown = sorted(set(document) - {"seconds", "waitSeconds"})
    if unknown:
        raise invalid(f"Unknown field {unknown[0]!r} in the clock:advance body: {usage}")
    try:
        seconds = parse_duration_s(document["seconds"], what="seconds")
        wait = parse_duration_s(document.get("waitSeconds", 30.0), what="waitSeconds")
    except DurationError as exc:
        raise invalid(f"Invalid clock:advance body: {exc}") from None
    return seconds, wait


def _error(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.to_json(), status_code=exc.http_status)


async def _read_body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise invalid(
                f"Request body larger than {MAX_REQUEST_BYTES} bytes; a task is at most 1 MiB"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(
    emulator: Emulator,
    allowed_hosts: tuple[str, ...] = (),
    functions_url: str | None = None,
    *,
    inspector_actions: bool = False,
) -> Starlette:
    """The HTTP app; besides loopback, it answers requests addressed to ``allowed_hosts``.
    ``functions_url``: where firebase-admin's tasks without a URL go (--functions-url);
    ``inspector_actions``: the inspector may pause, resume, purge and run (--inspector-actions)."""

    async def api(request: Request) -> Response:
        path = request.path_params["path"]
        version = request.url.path.split("/", 2)[1]  # the route matched "v2" or "v2beta3"
        routes = _VERSIONS[version]
        try:
            buffered = _BUFFER.fullmatch(path)
            if buffered is not None and request.method == "POST":
                types, calls = _API[version]
                task = buffer.buffer_task(
                    emulator,
                    types,
                    calls,
                    buffered.group(1),
                    buffered.group(2),
                    await _read_body(request),
                    request.headers.get("content-type"),
                )
                text = json_format.MessageToJson(task, indent=None)
                return Response(f'{{"task": {text}}}', media_type="application/json")
            for pattern, message in _UNIMPLEMENTED:
                if pattern.fullmatch(path):
                    raise unimplemented(message)
            candidates = [r for r in routes if r.pattern.fullmatch(path)]
            route = next((r for r in candidates if r.method == request.method), None)
            if route is None:
                if candidates:
                    raise ApiError(
                        grpc.StatusCode.UNIMPLEMENTED,
                        f"Method {request.method} is not allowed on /{version}/{path}",
                    )
                raise ApiError(
                    grpc.StatusCode.NOT_FOUND,
                    f"No Cloud Tasks {version} resource at /{version}/{path}",
                )
            match = route.pattern.fullmatch(path)
            assert match is not None
            body = await _read_body(request)
            pb = _build_request(route, match.group(1), request, body)
            assert route.call is not None
            result = route.call(emulator, pb)
        except ApiError as exc:
            return _error(exc)
        except Exception as exc:  # a bug answers 500 with Google's error shape
            log.exception("internal error on %s %s", request.method, request.url.path)
            return JSONResponse(
                {
                    "error": {
                        "code": 500,
                        "message": f"Emulator internal error: {exc}",
                        "status": "INTERNAL",
                    }
                },
                status_code=500,
            )
        ints = "enum-encoding=int" in request.query_params.get("$alt", "")
        text = (
            "{}"
            if result is None
            else json_format.MessageToJson(result, use_integers_for_enums=ints, indent=None)
        )
        return Response(text, media_type="application/json")

    async def firebase(request: Request) -> Response:
        path = "projects/" + request.path_params["path"]
        try:
            body = await _read_body(request)
            if request.method == "DELETE":
                return JSONResponse(firebase_api.delete(emulator, path))
            return JSONResponse(firebase_api.enqueue(emulator, functions_url, path, body))
        except ApiError as exc:
            return _error(exc)

    async def discovery(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        return JSONResponse(emulator.issuer.discovery(base))

    async def pem_certs(request: Request) -> Response:
        return JSONResponse(
            emulator.issuer.pem_certs(), headers={"Cache-Control": "public, max-age=300"}
        )

    async def jwks(request: Request) -> Response:
        return JSONResponse(
            emulator.issuer.jwks(), headers={"Cache-Control": "public, max-age=300"}
        )

    async def token(request: Request) -> Response:
        try:
            answer = oauth_token.grant(
                await _read_body(request),
                emulator.issuer.id_token,
            )
        except oauth_token.TokenError as exc:
            return JSONResponse(exc.body(), status_code=400)
        except ApiError as exc:
            return _error(exc)
        return JSONResponse(answer, headers={"Cache-Control": "no-store"})

    async def health(request: Request) -> Response:
        return JSONResponse(emulator.health())

    async def reset_tombstones(request: Request) -> Response:
        return JSONResponse({"cleared": emulator.reset_tombstones()})

    async def dropped(request: Request) -> Response:
        try:
            return JSONResponse(emulator.dropped(request.query_params.get("queue")))
        except ApiError as exc:
            return _error(exc)

    async def reset_dropped(request: Request) -> Response:
        return JSONResponse({"cleared": emulator.reset_dropped()})

    async def metrics(request: Request) -> Response:
        return Response(prometheus.render(emulator), media_type=prometheus.CONTENT_TYPE)

    async def clock(request: Request) -> Response:
        return JSONResponse(emulator.clock_state())

    async def advance_clock(request: Request) -> Response:
        try:
            seconds, wait_limit = _advance_arguments(await _read_body(request))
            return JSONResponse(await emulator.advance_clock(seconds, wait_limit))
        except ApiError as exc:
            return _error(exc)

    async def run_due(request: Request) -> Response:
        try:
            return JSONResponse({"started": emulator.run_due(request.path_params["queue"])})
        except ApiError as exc:
            return _error(exc)

    return Starlette(
        routes=[
            Route("/v2/{path:path}", api, methods=["GET", "POST", "PATCH", "DELETE"]),
            Route("/v2beta3/{path:path}", api, methods=["GET", "POST", "PATCH", "DELETE"]),
            Route("/projects/{path:path}", firebase, methods=["POST", "DELETE"]),
            Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
            Route("/oauth2/v1/certs", pem_certs, methods=["GET"]),
            Route("/oauth2/v3/certs", jwks, methods=["GET"]),
            Route(TOKEN_PATH, token, methods=["POST"]),
            Route("/emulator/v1/health", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/emulator/v1/tombstones:reset", reset_tombstones, methods=["POST"]),
            Route("/emulator/v1/dropped", dropped, methods=["GET"]),
            Route("/emulator/v1/dropped:reset", reset_dropped, methods=["POST"]),
            Route("/emulator/v1/clock", clock, methods=["GET"]),
            Route("/emulator/v1/clock:advance", advance_clock, methods=["POST"]),
            *Inspector(emulator, actions=inspector_actions).routes(),
            Route("/emulator/v1/{queue:path}:runDue", run_due, methods=["POST"]),
        ],
        middleware=[Middleware(HostOriginGuard, allowed_hosts=allowed_hosts)],
    )
