"""The inspector: a small web page of the emulator's queues and tasks, on its HTTP port.

``GET /inspector`` serves a static page (``emulator/inspector_page/``: HTML, one
JavaScript file, one stylesheet, an icon; no build step, nothing fetched from elsewhere)
that reads JSON from:

* ``GET /emulator/v1/inspector/session``: ``{"actions": bool, "token": str | null}``;
* ``GET /emulator/v1/inspector/queues``: every queue (emulator/inspector_views.py);
* ``GET /emulator/v1/inspector/QUEUE_NAME/tasks``: a queue's tasks;
* ``GET /emulator/v1/inspector/TASK_NAME``: one task, body decoded.

It is read-only unless the emulator runs with ``--inspector-actions``; then
``POST /emulator/v1/inspector/QUEUE_NAME:pause`` (``:resume``, ``:purge``) and
``POST .../TASK_NAME:run`` call the same core methods as PauseQueue, ResumeQueue,
PurgeQueue and RunTask. An action is refused (403, with why) unless it carries
the per-process random token of the session call in ``X-Inspector-Token``, and
its ``Origin`` (when sent) is this very origin and ``Sec-Fetch-Site`` (when sent)
is ``same-origin``: another page, even one on another loopback port, can neither
read the token nor pass for this one. The Host, Origin and Content-Type checks
of emulator/http_guard.py run before all of this. Everything the page shows is
set as text, and a strict Content-Security-Policy allows only this origin's
script and style, so a task body holding markup stays text.

It deliberately changes nothing but through those four core calls, and keeps
no state of its own besides the token.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from importlib import resources
from typing import Any, Final

from google.cloud import tasks_v2
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from emulator import inspector_views as views
from emulator.core import Emulator
from emulator.errors import ApiError

PAGE_PATH: Final = "/inspector"
API_PREFIX: Final = "/emulator/v1/inspector"
TOKEN_HEADER: Final = "X-Inspector-Token"  # noqa: S105 - a header name, not a secret
ACTIONS_FLAG: Final = "--inspector-actions"

# Only this origin's own files; no inline script or style, no frames, no forms.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
PAGE_FILES: Final = {
    "index.html": "text/html; charset=utf-8",
    "inspector.js": "text/javascript; charset=utf-8",
    "inspector.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}

_QUEUE: Final = re.compile(r"projects/[^/]+/locations/[^/]+/queues/[^/:]+")
_TASK: Final = re.compile(_QUEUE.pattern + r"/tasks/[^/:]+")
_QUEUE_ACTIONS: Final[dict[str, Callable[[Emulator, Any], Any]]] = {
    "pause": lambda emu, name: emu.pause_queue(tasks_v2.PauseQueueRequest.pb()(name=name)),
    "resume": lambda emu, name: emu.resume_queue(tasks_v2.ResumeQueueRequest.pb()(name=name)),
    "purge": lambda emu, name: emu.purge_queue(tasks_v2.PurgeQueueRequest.pb()(name=name)),
}


def _page_file(name: str) -> bytes:
    return resources.files("emulator").joinpath("inspector_page", name).read_bytes()


def _json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=_SECURITY_HEADERS)


def _refused(status: int, code: str, message: str) -> JSONResponse:
    return _json({"error": {"code": status, "message": message, "status": code}}, status)


def _api_error(exc: ApiError) -> JSONResponse:
    return _json(exc.to_json(), exc.http_status)


def cross_site(request: Request) -> str | None:
    """Why a request does not come from this origin's own page, or None.

    A browser sends ``Sec-Fetch-Site`` on every request; an absent header passes (a
    non-browser client sends none). ``Origin`` is the HTTP port's own rule, checked
    before any route (emulator/http_guard.py: only this origin is accepted)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return f"Sec-Fetch-Site {site[:40]!r}: only the inspector's own page may do this"
    return None


class Inspector:
    """The page, its JSON and its guarded actions, for one emulator process."""

    def __init__(self, emulator: Emulator, *, actions: bool = False) -> None:
        self.emulator = emulator
        self.actions = actions
        self.token = secrets.token_urlsafe(32)  # per process; only the page's session reads it
        self.files = {name: _page_file(name) for name in PAGE_FILES}

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.home, methods=["GET"]),
            Route(PAGE_PATH, self.page, methods=["GET"]),
            Route(PAGE_PATH + "/{file}", self.static, methods=["GET"]),
            Route(API_PREFIX + "/session", self.session, methods=["GET"]),
            Route(API_PREFIX + "/queues", self.queues, methods=["GET"]),
            Route(API_PREFIX + "/{name:path}", self.read, methods=["GET"]),
            Route(API_PREFIX + "/{name:path}", self.act, methods=["POST"]),
        ]

    # -- the page ---------------------------------------------------------------
    async def home(self, request: Request) -> Response:
        return RedirectResponse(PAGE_PATH, status_code=302)

    def _file(self, name: str) -> Response:
        return Response(self.files[name], media_type=PAGE_FILES[name], headers=_SECURITY_HEADERS)

    async def page(self, request: Request) -> Response:
        return self._file("index.html")

    async def static(self, request: Request) -> Response:
        name = request.path_params["file"]
        if name not in PAGE_FILES or name == "index.html":
            return _refused(404, "NOT_FOUND", f"No inspector file {name[:100]!r}")
        return self._file(name)

    # -- reading ----------------------------------------------------------------
    async def session(self, request: Request) -> Response:
        problem = cross_site(request)
        if problem is not None:
            return _refused(403, "PERMISSION_DENIED", problem)
        return _json({"actions": self.actions, "token": self.token if self.actions else None})

    async def queues(self, request: Request) -> Response:
        return _json(views.queues_view(self.emulator))

    async def read(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        try:
            if name.endswith("/tasks") and _QUEUE.fullmatch(name.removesuffix("/tasks")):
                return _json(views.tasks_view(self.emulator._queue(name.removesuffix("/tasks"))))
            if _TASK.fullmatch(name):
                return _json(views.task_view(self.emulator._task(name)))
        except ApiError as exc:
            return _api_error(exc)
        return _refused(
            404,
            "NOT_FOUND",
            f"No inspector resource {name[:200]!r}: use queues, QUEUE_NAME/tasks or TASK_NAME",
        )

    # -- actions ----------------------------------------------------------------
    def _refusal(self, request: Request) -> str | None:
        if not self.actions:
            return (
                "The inspector is read-only: start the emulator with "
                f"{ACTIONS_FLAG} to pause, resume, purge or run from it"
            )
        problem = cross_site(request)
        if problem is not None:
            return problem
        token = request.headers.get(TOKEN_HEADER, "")
        if not secrets.compare_digest(token.encode(), self.token.encode()):
            return (
                f"Missing or wrong {TOKEN_HEADER} header: actions take the token "
                f"{API_PREFIX}/session gives the inspector's page"
            )
        return None

    async def act(self, request: Request) -> Response:
        problem = self._refusal(request)
        if problem is not None:
            return _refused(403, "PERMISSION_DENIED", problem)
        name, _, action = request.path_params["name"].rpartition(":")
        try:
            if action in _QUEUE_ACTIONS and _QUEUE.fullmatch(name):
                _QUEUE_ACTIONS[action](self.emulator, name)
                return _json(views.queue_view(self.emulator, self.emulator._queue(name)))
            if action == "run" and _TASK.fullmatch(name):
                self.emulator.run_task(tasks_v2.RunTaskRequest.pb()(name=name))
                return _json(views.task_view(self.emulator._task(name)))
        except ApiError as exc:
            return _api_error(exc)
        return _refused(
            404,
            "NOT_FOUND",
            f"No inspector action {request.path_params['name'][:200]!r}: use "
            "QUEUE_NAME:pause, :resume, :purge or TASK_NAME:run",
        )
