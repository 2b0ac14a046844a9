"""The HTTP request Cloud Tasks sends for one attempt of a task.

:func:`build_request` merges the task's HttpRequest with its queue's
HttpTarget overrides (uri_override, http_method, header_overrides,
oidc_token: target.proto,
https://cloud.google.com/tasks/docs/reference/rpc/google.cloud.tasks.v2#httptarget),
adds the ``X-CloudTasks-*`` headers
(https://cloud.google.com/tasks/docs/creating-http-target-tasks#handler) and
signs an OIDC ID token when one is asked for.

It deliberately performs nothing (emulator/delivery.py sends) and changes no
task state: the dispatcher counts the attempt before calling it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from google.cloud import tasks_v2

from contract.names import (
    CLOUD_TASKS_USER_AGENT,
    HEADER_ETA,
    HEADER_EXECUTION_COUNT,
    HEADER_PREVIOUS_RESPONSE,
    HEADER_QUEUE_NAME,
    HEADER_RETRY_COUNT,
    HEADER_TASK_NAME,
)
from emulator import appengine, validation as v
from emulator.appengine import AppEngineHosts
from emulator.delivery import OutboundRequest
from emulator.oidc import OidcIssuer
from emulator.state import TaskState, get_time

_IF_NOT_EXISTS = tasks_v2.UriOverride.UriOverrideEnforceMode.IF_NOT_EXISTS


def override_uri(url: str, uo: Any) -> str:
    """Apply a queue's UriOverride to a task URL (ALWAYS, or IF_NOT_EXISTS per part)."""
    parts = urlsplit(url) if url else urlsplit("https://")
    only_missing = uo.uri_override_enforce_mode == _IF_NOT_EXISTS
    scheme, path, query = parts.scheme, parts.path, parts.query
    host = parts.hostname or ""
    port = parts.port
    if uo.HasField("scheme") and uo.scheme and not (only_missing and scheme):
        scheme = "http" if uo.scheme == tasks_v2.UriOverride.Scheme.HTTP else "https"
    scheme = scheme or "https"
    if uo.HasField("host") and not (only_missing and host):
        host = uo.host
    if uo.HasField("port") and not (only_missing and port):
        port = uo.port or None
    if uo.HasField("path_override") and not (only_missing and path):
        path = uo.path_override.path
    if uo.HasField("query_override") and not (only_missing and query):
        query = uo.query_override.query_params
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((scheme, netloc, path, query, ""))


def effective_url(hr: Any, qpb: Any) -> str:
    """The URL a task is delivered to: its own, with the queue's uri_override applied."""
    if qpb.HasField("http_target") and qpb.http_target.HasField("uri_override"):
        return override_uri(hr.url, qpb.http_target.uri_override)
    return str(hr.url)


def build_request(
    ts: TaskState,
    retry_count: int,
    issuer: OidcIssuer,
    now: float,
    app_engine_hosts: AppEngineHosts,
) -> OutboundRequest:
    """The request of attempt ``retry_count + 1`` at time ``now`` (the token's issue
    time); raises ApiError if it cannot be sent. App Engine tasks are built by
    emulator/appengine.py."""
    pb = ts.pb
    if pb.HasField("app_engine_http_request"):
        return appengine.build_request(ts, retry_count, app_engine_hosts)
    hr = pb.http_request
    qpb = ts.queue.pb
    method = v.METHOD_NAMES.get(hr.http_method, "POST")
    url = effective_url(hr, qpb)
    headers = {k: val for k, val in hr.headers.items() if not v.is_reserved_header(k)}
    oidc = hr.oidc_token if hr.HasField("oidc_token") else None
    if qpb.HasField("http_target"):
        ht = qpb.http_target
        if ht.http_method:
            method = v.METHOD_NAMES.get(ht.http_method, method)
        for h in ht.header_overrides:
            if not v.is_reserved_header(h.header.key):
                headers[h.header.key] = h.header.value
        if ht.HasField("oidc_token"):
            oidc = ht.oidc_token
    v.check_url(url, "the task's effective URL")
    headers["User-Agent"] = CLOUD_TASKS_USER_AGENT
    headers[HEADER_QUEUE_NAME] = ts.queue.name.rsplit("/", 1)[1]
    headers[HEADER_TASK_NAME] = ts.name.rsplit("/", 1)[1]
    headers[HEADER_RETRY_COUNT] = str(retry_count)
    headers[HEADER_EXECUTION_COUNT] = str(ts.execution_count)
    headers[HEADER_ETA] = f"{get_time(pb.schedule_time):.6f}"
    if ts.previous_response is not None and retry_count > 0:
        headers[HEADER_PREVIOUS_RESPONSE] = str(ts.previous_response)
    if oidc is not None:
        audience = oidc.audience or url
        token = issuer.id_token(oidc.service_account_email, audience, now)
        headers = {k: val for k, val in headers.items() if k.lower() != "authorization"}
        headers["Authorization"] = f"Bearer {token}"
    body = bytes(hr.body) if method in v.BODY_METHODS else b""
    return OutboundRequest(method, url, headers, body)
