"""Refuse HTTP requests a web browser could make on a page's behalf (CSRF, DNS rebinding).

The emulator's HTTP port has no authentication and creates tasks that reach
the local worker with a signed ID token, so any web page open while it runs
could otherwise drive it: a ``text/plain`` POST is a "simple" cross-origin
request that browsers send without asking (https://fetch.spec.whatwg.org/#cors-safelisted-request-header),
and a DNS-rebound name lets a page read the answers. :class:`HostOriginGuard`
wraps the whole ASGI app and, before any route runs:

* refuses a ``Host`` that is not a loopback name or address, or one of the
  names the emulator was told to answer to (``--host``, ``--allow-host``)
  (RFC 9110 section 7.2; the DNS-rebinding defence);
* refuses an ``Origin`` other than the emulator's own (``http://`` + the request's
  ``Host``; RFC 6454: a browser sends it on every cross-origin and every non-GET
  request), so a page on another loopback port is refused too;
* refuses a request with a body unless it is ``Content-Type: application/json``,
  which browsers cannot send cross-origin without a CORS preflight that the
  emulator never grants.

Refusals are Google's error JSON (``{"error": {"code", "message", "status"}}``).
The official google-cloud-tasks REST client sends ``Host: 127.0.0.1:PORT`` and
``application/json``, and no Origin, so it passes.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from emulator.oauth_token import FORM_TYPE

_LOOPBACK_NAMES: Final = frozenset({"localhost"})
JSON_TYPE: Final = "application/json"
TOKEN_PATH: Final = "/token"  # noqa: S105 (a path, emulator/oauth_token.py)
BUFFER_SUFFIX: Final = ":buffer"  # BufferTask, emulator/buffer.py
API_PREFIXES: Final = ("/v2/", "/v2beta3/")


def is_loopback(host: str) -> bool:
    """``localhost`` (RFC 6761 section 6.3) or a loopback address (127.0.0.0/8, ::1)."""
    name = host.strip("[]").lower().rstrip(".")
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _hostname(authority: str) -> str | None:
    """The host part of ``host[:port]``, lower-cased; None when it is not one."""
    try:
        parts = urlsplit("//" + authority)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return None
    if parts.hostname is None or parts.username is not None or parts.path:
        return None
    return parts.hostname.rstrip(".")


class HostOriginGuard:
    """ASGI middleware: only loopback (or explicitly allowed) hosts, origins, JSON bodies."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = frozenset(h.strip("[]").lower().rstrip(".") for h in allowed_hosts)

    def _allowed(self, host: str | None) -> bool:
        return host is not None and (is_loopback(host) or host.strip("[]") in self.allowed)

    def problem(
        self, headers: dict[str, str], method: str, path: str = ""
    ) -> tuple[int, str, str] | None:
        """Why the request is refused (HTTP status, google.rpc code, message), or None."""
        host = headers.get("host")
        if host is None or not self._allowed(_hostname(host)):
            return (
                403,
                "PERMISSION_DENIED",
                f"Host {(host or '')[:100]!r} is not a loopback address: the emulator only "
                "answers requests addressed to 127.0.0.1, ::1 or localhost (start it with "
                "--host or --allow-host to answer to another name)",
            )
        origin = headers.get("origin")
        # Only the emulator's own pages (the inspector) are same-origin. A page on another
        # loopback port is another origin too: its no-cors POSTs (a queue's :pause, :purge,
        # a task's :run, BufferTask's text body) need no preflight, so they are refused here.
        if origin is not None and origin.lower().rstrip("/") != f"http://{host.lower()}":
            return (
                403,
                "PERMISSION_DENIED",
                f"Origin {origin[:100]!r} is refused: the emulator's API is not for web pages "
                f"(only its own pages, origin http://{host[:100]}, may call it from a browser)",
            )
        length = headers.get("content-length", "").strip()
        has_body = length not in ("", "0") or "transfer-encoding" in headers
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        # The OAuth token endpoint takes forms, as Google's does; it only mints
        # opaque access tokens and ID tokens anyone could get from the API anyway.
        accepted = (JSON_TYPE, FORM_TYPE) if path == TOKEN_PATH else (JSON_TYPE,)
        # BufferTask's body is the task's own, of any type (emulator/buffer.py); the
        # Host and Origin checks above still keep web pages out.
        buffered = (
            method == "POST" and path.startswith(API_PREFIXES) and path.endswith(BUFFER_SUFFIX)
        )
        if has_body and media not in accepted and not buffered:
            return (
                415,
                "INVALID_ARGUMENT",
                f"Content-Type {media[:100] or '(none)'!r} is not supported on {method}: send "
                f"the request body as {accepted[-1]}",
            )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for key, value in scope["headers"]:
            name = key.decode("latin-1").lower()
            if name in headers and name in ("host", "origin", "content-type"):
                headers[name] = "\x00duplicate"  # never matches an allowed value
            else:
                headers[name] = value.decode("latin-1")
        refused = self.problem(headers, str(scope.get("method", "")), str(scope.get("path", "")))
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, code, message = refused
        await _send_json(
            send, status, {"error": {"code": status, "message": message, "status": code}}
        )


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
