"""The worker's ASGI app: `POST /tasks/{type}` and `GET /healthz`, over `TaskDelivery`.

`create_app()` is the app factory: it reads the environment (`Settings.from_env`)
when called, never at import. `python -m service` calls it (the image's
command), and it works as `uvicorn service.app:create_app --factory` too
(without the drain on SIGTERM, which is `service.__main__`'s).

The app is a thin adapter from HTTP to `service.delivery.TaskDelivery`. For a
`POST /tasks/{type}` it, in order: refuses new work while draining (503), checks
the token (401/403/503, logged through the delivery; the handler never runs),
reads the body (stopping above the Cloud Tasks size limit, 408 past
`TASKS_BODY_TIMEOUT_S`), hands the parsed
request to the delivery, and renders the `Outcome` it returns. Before any
route, `service.http_limits.HeaderLimit` refuses a header section above 64 KiB. Every status,
body and header comes from `service.outcomes`; what each means for Cloud Tasks
is tabled there. At startup (lifespan) it creates the shared HTTP client, fetches
the token certificates, and on Cloud Run without GOOGLE_CLOUD_PROJECT asks the
metadata server for the project id (for the trace field).

It deliberately does not decide outcomes (`service.delivery`), load plug-ins
(`service.plugins`) or handle signals: that is the server's job
(`service.__main__`), which reads `app.state.drain`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Final

import httpx
from pydantic_core import to_json
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from contract.limits import MAX_TASK_BYTES
from contract.names import HEALTH_ROUTE, TASK_ROUTE_PREFIX
from service import outcomes
from service.auth import AuthError, CertCache, CertsUnavailableError, TokenVerifier
from service.config import Settings
from service.deadletter import DeadLetterSink
from service.delivery import TaskDelivery, TaskRequest
from service.drain import Drain
from service.http_limits import HeaderLimit
from service.idempotency import IdempotencyStore, InMemoryIdempotencyStore
from service.outcomes import Outcome
from service.plugins import load_dead_letter_sink, load_idempotency_store, load_task_modules
from service.task_registry import TaskRegistry, registry

if TYPE_CHECKING:
    from service.span_export import AttemptSpans

logger = logging.getLogger("service.app")

CLOUD_RUN_SERVICE_ENV: Final = "K_SERVICE"  # set by Cloud Run in every container
METADATA_HOST_ENV: Final = "GCE_METADATA_HOST"  # the override google-auth honours too
DEFAULT_METADATA_HOST: Final = "metadata.google.internal"
# The metadata server answers in milliseconds on Cloud Run; elsewhere (a local
# stack that sets K_SERVICE to look like Cloud Run) this bounds the wait at startup.
METADATA_TIMEOUT_S: Final = 1.0


class _BodyTimeout(Exception):
    """The request body did not arrive within `Settings.body_timeout_s`: 408.

    A caller trickling bytes must not hold a connection and a task slot for ever.
    """


async def discover_project(http: httpx.AsyncClient) -> str | None:
    """The project id from the metadata server (Cloud Run), or None; never raises."""
    # https://cloud.google.com/run/docs/container-contract#metadata-server
    host = os.environ.get(METADATA_HOST_ENV) or DEFAULT_METADATA_HOST
    url = f"http://{host}/computeMetadata/v1/project/project-id"
    try:
        response = await http.get(
            url, headers={"Metadata-Flavor": "Google"}, timeout=METADATA_TIMEOUT_S
        )
        response.raise_for_status()
    except httpx.HTTPError as exc:
        logger.warning(
            "project id unknown (set GOOGLE_CLOUD_PROJECT): metadata server %s: %s", url, exc
        )
        return None
    return response.text.strip() or None


def create_app(
    settings: Settings | None = None,
    *,
    task_registry: TaskRegistry | None = None,
    store: IdempotencyStore | None = None,
    dead_letter_sink: DeadLetterSink | None = None,
) -> Starlette:
    """Build the worker app (the factory `python -m service` and `uvicorn --factory` call).

    Args:
        settings: defaults to `Settings.from_env()`.
        task_registry: defaults to the process-wide `service.registry`, after
            importing the built-in handlers and `settings.extra_modules`.
        store: idempotency store; defaults to `TASKS_IDEMPOTENCY_STORE`, else a
            bounded in-memory one.
        dead_letter_sink: optional extra destination for dead letters (they
            are always logged); defaults to `TASKS_DEAD_LETTER_SINK`.

    Raises:
        ConfigError: the environment is invalid or names something unimportable.
    """
    settings = settings or Settings.from_env()
    if task_registry is None:
        load_task_modules(settings.extra_modules)
        task_registry = registry
    if dead_letter_sink is None:
        dead_letter_sink = load_dead_letter_sink(settings)
    if store is None:
        store = load_idempotency_store(settings)
    if store is None:  # not `or`: a store with __len__ (an empty one) is falsy
        store = InMemoryIdempotencyStore(
            max_entries=settings.idempotency_max_entries, ttl_s=settings.idempotency_ttl_s
        )
    delivery = TaskDelivery(
        task_registry,
        store,
        dead_letter_sink=dead_letter_sink,
        final_attempts=settings.final_attempts,
        project=settings.project,
        routing=settings.queue_routing,
        spans=_attempt_spans(settings),
    )
    adapter = _HttpAdapter(settings, delivery)
    app = Starlette(
        routes=[
            Route(HEALTH_ROUTE, adapter.healthz, methods=["GET"]),
            Route(TASK_ROUTE_PREFIX + "{type}", adapter.task, methods=["POST"]),
        ],
        exception_handlers={404: adapter.misrouted, 405: adapter.misrouted},
        middleware=[Middleware(HeaderLimit)],
        lifespan=adapter.lifespan,
    )
    app.state.drain = adapter.drain
    app.state.settings = settings
    app.state.registry = task_registry
    app.state.store = store
    app.state.delivery = delivery
    return app


def _attempt_spans(settings: Settings) -> AttemptSpans | None:
    """The span export when `TASKS_TRACE_EXPORT` is set (its SDK loads only then)."""
    if settings.trace_export is None:
        return None
    from service.span_export import AttemptSpans

    return AttemptSpans(settings.trace_export)


class _HttpAdapter:
    """The endpoints and lifespan of one app: HTTP in, `TaskDelivery`, HTTP out."""

    def __init__(self, settings: Settings, delivery: TaskDelivery) -> None:
        self.settings = settings
        self.delivery = delivery
        self.drain = Drain()
        self.verifier: TokenVerifier | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, _: Starlette) -> AsyncIterator[None]:
        settings, delivery = self.settings, self.delivery
        async with httpx.AsyncClient(follow_redirects=False) as http:
            delivery.http = http
            if delivery.project is None and os.environ.get(CLOUD_RUN_SERVICE_ENV):
                # Cloud Run does not set GOOGLE_CLOUD_PROJECT; the trace field needs it.
                delivery.project = await discover_project(http)
            if settings.auth_enabled:
                await self._start_token_check(http)
            elif settings.auth_disabled:
                logger.warning(
                    "TOKEN CHECK DISABLED (TASKS_AUTH_DISABLED=true): any caller that reaches "
                    "the service can run tasks; Cloud Run IAM is the only gate",
                    extra={"fields": {"auth_disabled": True, "host": settings.host}},
                )
            else:
                logger.warning(
                    "token check off (TASKS_ALLOWED_INVOKERS is not set): serving %s only",
                    settings.host,
                    extra={"fields": {"host": settings.host}},
                )
            logger.info(
                "worker ready",
                extra={"fields": {"task_types": delivery.registry.names()}},
            )
            yield
            self.verifier = None
            delivery.http = None
            if delivery.spans is not None:
                delivery.spans.shutdown()  # the last batch of spans

    async def _start_token_check(self, http: httpx.AsyncClient) -> None:
        settings = self.settings
        assert settings.audience is not None  # Settings.from_env guarantees it
        certs = CertCache(settings.certs_url, http, min_refresh_s=settings.certs_min_refresh_s)
        self.verifier = TokenVerifier(
            audience=settings.audience, allowed_emails=settings.allowed_invokers, certs=certs
        )
        await certs.prefetch()
        logger.info(
            "token check on",
            extra={
                "fields": {
                    "audience": settings.audience,
                    "allowed_invokers": sorted(settings.allowed_invokers),
                    "certs_url": settings.certs_url,
                    "issuers": sorted(self.verifier.issuers),
                }
            },
        )

    async def healthz(self, _: Request) -> Response:
        return _render(outcomes.health(is_draining=self.drain.draining))

    async def task(self, request: Request) -> Response:
        if self.drain.draining:
            # New work goes back to Cloud Tasks, which retries on another instance.
            return _render(outcomes.draining())
        self.drain.inflight += 1
        received_at = time.perf_counter()
        try:
            return _render(await self._task(request, received_at))
        except ClientDisconnect:
            # Gone before its body arrived: nobody to answer, and nothing ran.
            logger.info("caller disconnected before sending the whole task")
            return _render(outcomes.disconnected())
        except _BodyTimeout:
            outcome = outcomes.body_timed_out(self.settings.body_timeout_s)
            logger.warning(
                "%s",
                outcome.reason,
                extra={"fields": {"outcome": outcome.outcome, "status": outcome.status}},
            )
            return _render(outcome)
        finally:
            self.drain.inflight -= 1

    async def _task(self, request: Request, received_at: float) -> Outcome:
        raw_headers: list[tuple[bytes, bytes]] = request.scope["headers"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw_headers}
        task_type: str = request.path_params["type"]
        invoker: str | None = None
        if self.verifier is not None:
            checked = await _authenticate(self.verifier, headers, raw_headers)
            if isinstance(checked, Outcome):
                refused = TaskRequest(task_type, headers, b"", received_at=received_at)
                return await self.delivery.refuse(refused, checked)
            invoker = checked
        body = await _read_body(request, headers, self.settings.body_timeout_s)
        parsed = TaskRequest(task_type, headers, body, invoker=invoker, received_at=received_at)
        return await self.delivery.deliver(parsed)

    async def misrouted(self, request: Request, exc: Exception) -> Response:
        # Cloud Tasks retries a 404/405 until the queue gives up: say so in the log,
        # with what identifies the task, or the attempts are invisible.
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        headers = {k: v for k, v in request.headers.items() if k.startswith("x-cloudtasks-")}
        outcome = outcomes.no_route(status, exc.headers if isinstance(exc, HTTPException) else None)
        logger.log(
            outcome.severity,
            "no route for %s %s: %d (tasks are POST %s<type>)",
            request.method,
            request.url.path,
            status,
            TASK_ROUTE_PREFIX,
            extra={"fields": {"outcome": outcome.outcome, "status": status, "headers": headers}},
        )
        return _render(outcome)


async def _authenticate(
    verifier: TokenVerifier, headers: Mapping[str, str], raw: list[tuple[bytes, bytes]]
) -> str | Outcome | None:
    """The verified invoker email, or the outcome of a rejected request."""
    # RFC 9110 section 5.3: a field may appear twice only if its value is a list, and
    # Authorization's is not. The dict above keeps the last: refuse the ambiguity.
    if sum(1 for name, _ in raw if name.lower() == b"authorization") > 1:
        return outcomes.unauthenticated("more than one Authorization header")
    try:
        claims = await verifier.verify(headers.get("authorization"))
    except AuthError as exc:
        if exc.status == 401:
            return outcomes.unauthenticated(exc.reason)
        return outcomes.forbidden(exc.reason)
    except CertsUnavailableError as exc:
        return outcomes.certs_unavailable(str(exc))
    email = claims.get("email")
    return email if isinstance(email, str) else None


async def _read_body(
    request: Request, headers: Mapping[str, str], timeout_s: float
) -> bytes | None:
    """The whole body, or None above the Cloud Tasks size limit."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_TASK_BYTES:
        return None
    try:
        async with asyncio.timeout(timeout_s):
            return await _receive_body(request)
    except TimeoutError:
        raise _BodyTimeout() from None


async def _receive_body(request: Request) -> bytes | None:
    # Straight from `receive` rather than `request.stream()`: same result for a
    # plain POST, a third of the cost on the hot path (benchmarks/service_bench.py).
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_TASK_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _render(outcome: Outcome) -> Response:
    if outcome.body is None:
        return Response(status_code=outcome.status, headers=dict(outcome.headers))
    return Response(
        to_json(outcome.body, fallback=str),
        status_code=outcome.status,
        headers=dict(outcome.headers),
        media_type="application/json",
    )
