"""The worker's ASGI app: `POST /tasks/{type}` and `GET /healthz`.

One delivery goes through, in order: drain check (503 while shutting down),
token check (401/403, handler never runs), context from the headers, body
read (413 above the Cloud Tasks size limit), idempotency claim (an already
finished task is acknowledged again, a running duplicate gets 409), task type
lookup and payload validation (both permanent: dead letter), the handler, and
one log line with the outcome and latency. Status codes (README.md):

| outcome | status | Cloud Tasks then |
|---|---|---|
| handler returned | 200 | deletes the task |
| `PermanentError`, invalid payload, unknown type | 200 + dead letter | deletes the task |
| duplicate of a finished task | 200 | deletes the task |
| `TransientError` | 503 (or its status) + `Retry-After` | retries |
| any other exception | 500 | retries |
| duplicate of a running task | 409 + `Retry-After` | retries |
| draining on SIGTERM | 503 + `Retry-After` | retries (elsewhere) |
| missing/invalid token, wrong identity | 401 / 403 | retries |

`app = create_app()` reads the environment at import, so `service.app:app`
is what a server loads. At startup (lifespan) it creates the shared HTTP
client, fetches the token certificates, and on Cloud Run without
GOOGLE_CLOUD_PROJECT asks the metadata server for the project id (for the
trace field). The app deliberately does not handle signals: that is
the server's job (`service.__main__`), which reads `app.state.drain`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
from pydantic import ValidationError
from pydantic_core import to_json, to_jsonable_python
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from contract.limits import MAX_TASK_BYTES
from contract.names import HEALTH_ROUTE, TASK_ROUTE_PREFIX
from service.auth import AuthError, CertCache, CertsUnavailableError, TokenVerifier
from service.config import ConfigError, Settings
from service.context import TaskContext, context_from_headers
from service.deadletter import DeadLetter, DeadLetterSink, log_dead_letter
from service.drain import Drain
from service.errors import PermanentError, TransientError
from service.idempotency import (
    ClaimState,
    Completion,
    IdempotencyStore,
    InMemoryIdempotencyStore,
)
from service.logs import SAMPLED_FIELD, SPAN_FIELD, TRACE_FIELD, delivery_fields
from service.task_registry import TaskRegistry, registry, start_handler

logger = logging.getLogger("service.app")

# Longer than the longest dispatch deadline (30 min), so a live claim never lapses
# while its handler still runs; it only matters for stores that outlive a crash.
CLAIM_LEASE_S: Final = 1860.0
DUPLICATE_RETRY_AFTER_S: Final = 10
DRAINING_RETRY_AFTER_S: Final = 1
CERTS_RETRY_AFTER_S: Final = 10
DEPENDENCY_RETRY_AFTER_S: Final = 10  # dead-letter sink or idempotency store failing
BUILTIN_HANDLERS: Final = "service.handlers"
CLOUD_RUN_SERVICE_ENV: Final = "K_SERVICE"  # set by Cloud Run in every container
METADATA_HOST_ENV: Final = "GCE_METADATA_HOST"  # the override google-auth honours too
DEFAULT_METADATA_HOST: Final = "metadata.google.internal"
# The metadata server answers in milliseconds on Cloud Run; elsewhere (a local
# stack that sets K_SERVICE to look like Cloud Run) this bounds the wait at startup.
METADATA_TIMEOUT_S: Final = 1.0


@dataclass(slots=True)
class _Runtime:
    """What exists only while the app runs (created in the lifespan)."""

    http: httpx.AsyncClient | None = None
    verifier: TokenVerifier | None = None
    project: str | None = None


@dataclass(slots=True)
class _Outcome:
    status: int
    outcome: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    severity: int = logging.INFO
    exc_info: BaseException | None = None
    reason: str | None = None
    still_running: asyncio.Future[Any] | None = None
    """A plain handler's thread that outlived its timeout: it cannot be stopped."""

    def with_reason(self, reason: str) -> _Outcome:
        self.reason = reason
        return self


async def discover_project(http: httpx.AsyncClient) -> str | None:
    """The project id from the metadata server (Cloud Run), or None; never raises."""
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


def load_task_modules(modules: tuple[str, ...]) -> None:
    """Import the built-in handlers and `TASKS_EXTRA_MODULES`, which register types."""
    for module in (BUILTIN_HANDLERS, *modules):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(
                f"cannot import task module {module!r} (from TASKS_EXTRA_MODULES): {exc}; "
                "check the module path and that it is on PYTHONPATH in the image"
            ) from exc


def load_object(spec: str, variable: str) -> Any:
    """`module:attribute` from the environment; a class or factory is called once."""
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{variable}={spec!r}: cannot import {module_name!r}: {exc}") from exc
    try:
        target = getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"{variable}={spec!r}: {module_name} has no {attribute!r}") from None
    # An instance (it has the protocol's methods) is used as is; a class or a
    # factory function is called with no arguments.
    is_instance = not isinstance(target, type) and (
        hasattr(target, "record") or hasattr(target, "claim")
    )
    if not is_instance and callable(target):
        target = target()
    return target


def create_app(
    settings: Settings | None = None,
    *,
    task_registry: TaskRegistry | None = None,
    store: IdempotencyStore | None = None,
    dead_letter_sink: DeadLetterSink | None = None,
) -> Starlette:
    """Build the worker app.

    Args:
        settings: defaults to `Settings.from_env()`.
        task_registry: defaults to the process-wide `service.registry`, after
            importing the built-in handlers and `settings.extra_modules`.
        store: idempotency store; defaults to a bounded in-memory one.
        dead_letter_sink: optional extra destination for dead letters (they
            are always logged).
    """
    settings = settings or Settings.from_env()
    if task_registry is None:
        load_task_modules(settings.extra_modules)
        task_registry = registry
    if dead_letter_sink is None and settings.dead_letter_sink:
        dead_letter_sink = load_object(settings.dead_letter_sink, "TASKS_DEAD_LETTER_SINK")
        if not callable(getattr(dead_letter_sink, "record", None)):
            raise ConfigError(
                f"TASKS_DEAD_LETTER_SINK={settings.dead_letter_sink!r} has no record(letter) "
                "method; see service.DeadLetterSink"
            )
    if store is None and settings.idempotency_store:
        store = load_object(settings.idempotency_store, "TASKS_IDEMPOTENCY_STORE")
        missing = [m for m in ("claim", "complete", "release") if not hasattr(store, m)]
        if missing:
            raise ConfigError(
                f"TASKS_IDEMPOTENCY_STORE={settings.idempotency_store!r} lacks "
                f"{', '.join(missing)}; see service.IdempotencyStore"
            )
    if store is None:
        store = InMemoryIdempotencyStore(
            max_entries=settings.idempotency_max_entries, ttl_s=settings.idempotency_ttl_s
        )
    drain = Drain()
    runtime = _Runtime()
    runtime.project = settings.project

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(follow_redirects=False) as http:
            runtime.http = http
            if runtime.project is None and os.environ.get(CLOUD_RUN_SERVICE_ENV):
                # Cloud Run does not set GOOGLE_CLOUD_PROJECT; the trace field needs it.
                runtime.project = await discover_project(http)
            if settings.auth_enabled:
                assert settings.audience is not None  # Settings.from_env guarantees it
                certs = CertCache(
                    settings.certs_url, http, min_refresh_s=settings.certs_min_refresh_s
                )
                runtime.verifier = TokenVerifier(
                    audience=settings.audience,
                    allowed_emails=settings.allowed_invokers,
                    certs=certs,
                )
                await certs.prefetch()
                logger.info(
                    "token check on",
                    extra={
                        "fields": {
                            "audience": settings.audience,
                            "allowed_invokers": sorted(settings.allowed_invokers),
                            "certs_url": settings.certs_url,
                            "issuers": sorted(runtime.verifier.issuers),
                        }
                    },
                )
            else:
                logger.warning(
                    "token check OFF: TASKS_ALLOWED_INVOKERS is not set, so any caller "
                    "that reaches the service can run tasks (Cloud Run IAM is the only gate)"
                )
            logger.info(
                "worker ready",
                extra={"fields": {"task_types": task_registry.names()}},
            )
            yield
            runtime.verifier = None
            runtime.http = None

    async def healthz(_: Request) -> Response:
        if drain.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def handle_task(request: Request) -> Response:
        if drain.draining:
            # New work goes back to Cloud Tasks, which retries on another instance;
            # closing the connection stops a client from reusing it for the next one.
            return JSONResponse(
                {"status": "draining"},
                status_code=503,
                headers={"Retry-After": str(DRAINING_RETRY_AFTER_S), "Connection": "close"},
            )
        drain.inflight += 1
        started = time.perf_counter()
        try:
            return await _handle(request, started)
        except ClientDisconnect:
            # Gone before its body arrived: nobody to answer, and nothing ran.
            logger.info("caller disconnected before sending the whole task")
            return Response(status_code=400)
        finally:
            drain.inflight -= 1

    async def _handle(request: Request, started: float) -> Response:
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.scope["headers"]
        }
        invoker: str | None = None
        rejected: _Outcome | None = None
        if runtime.verifier is not None:
            checked = await _authenticate(runtime.verifier, headers)
            if isinstance(checked, _Outcome):
                rejected = checked
            else:
                invoker = checked
        ctx = context_from_headers(
            request.path_params["type"], headers, invoker_email=invoker, http=runtime.http
        )
        fields: dict[str, Any] = ctx.log_fields()
        if ctx.trace is not None:
            fields[TRACE_FIELD] = ctx.trace.resource_name(runtime.project)
            if ctx.trace.span_id:
                fields[SPAN_FIELD] = ctx.trace.span_id
            fields[SAMPLED_FIELD] = ctx.trace.sampled
        if invoker is not None:
            fields["invoker_email"] = invoker
        with delivery_fields(fields):
            if rejected is not None:
                outcome = rejected
            else:
                try:
                    outcome = await _deliver(request, ctx)
                except asyncio.CancelledError:
                    # Only the server cancels a task: the shutdown grace ran out.
                    logger.error(
                        "task %s cancelled by shutdown; Cloud Tasks will retry it",
                        ctx.task_type,
                        extra={"fields": {"outcome": "cancelled", "status": None}},
                    )
                    raise
            latency_ms = round((time.perf_counter() - started) * 1000, 3)
            result_fields: dict[str, Any] = {
                "outcome": outcome.outcome,
                "status": outcome.status,
                "latency_ms": latency_ms,
            }
            if outcome.reason is not None:
                result_fields["reason"] = outcome.reason
            logger.log(
                outcome.severity,
                "task %s %s: %d",
                ctx.task_type,
                outcome.outcome,
                outcome.status,
                exc_info=outcome.exc_info,
                extra={"fields": result_fields},
            )
        return Response(
            to_json(outcome.body, fallback=str),
            status_code=outcome.status,
            headers=outcome.headers,
            media_type="application/json",
        )

    async def _authenticate(
        verifier: TokenVerifier, headers: Mapping[str, str]
    ) -> str | _Outcome | None:
        """The verified invoker email, or the outcome of a rejected request."""
        try:
            claims = await verifier.verify(headers.get("authorization"))
        except AuthError as exc:
            # The reason stays in the log: telling a caller why its token failed
            # helps an attacker more than the legitimate caller.
            rejected = {401: "unauthenticated", 403: "forbidden"}[exc.status]
            return _Outcome(
                status=exc.status,
                outcome=rejected,
                body={"status": rejected},
                headers={"WWW-Authenticate": "Bearer"} if exc.status == 401 else {},
                severity=logging.WARNING,
            ).with_reason(exc.reason)
        except CertsUnavailableError as exc:
            return _Outcome(
                status=503,
                outcome="certs_unavailable",
                body={"status": "retry"},
                headers={"Retry-After": str(CERTS_RETRY_AFTER_S)},
                severity=logging.ERROR,
            ).with_reason(str(exc))
        email = claims.get("email")
        return email if isinstance(email, str) else None

    async def _deliver(request: Request, ctx: TaskContext) -> _Outcome:
        body = await _read_body(request, ctx.headers)
        if body is None:
            return _Outcome(
                status=413,
                outcome="too_large",
                body={"status": "too_large", "limit_bytes": MAX_TASK_BYTES},
                severity=logging.WARNING,
            ).with_reason(f"body above {MAX_TASK_BYTES} bytes, the Cloud Tasks task size limit")

        key = ctx.idempotency_key
        if key is not None:
            try:
                claim = await store.claim(key, lease_s=CLAIM_LEASE_S)
            except Exception as exc:
                # Without the claim the handler could run twice: let Cloud Tasks retry.
                return _Outcome(
                    status=503,
                    outcome="retry",
                    body={"status": "retry"},
                    headers={"Retry-After": str(DEPENDENCY_RETRY_AFTER_S)},
                    severity=logging.ERROR,
                    exc_info=exc,
                ).with_reason("idempotency store failed to claim the task")
            if claim.state is ClaimState.DONE:
                previous = claim.completion.outcome if claim.completion else "ok"
                return _Outcome(
                    status=200,
                    outcome="duplicate",
                    body={"status": "duplicate", "previous_outcome": previous},
                )
            if claim.state is ClaimState.IN_PROGRESS:
                return _Outcome(
                    status=409,
                    outcome="in_progress",
                    body={"status": "in_progress"},
                    headers={"Retry-After": str(DUPLICATE_RETRY_AFTER_S)},
                    severity=logging.WARNING,
                )
        finished = False
        still_running: asyncio.Future[Any] | None = None
        try:
            outcome = await _run(ctx, body)
            finished = outcome.outcome in ("ok", "dead_letter")
            still_running = outcome.still_running
            if key is not None and finished:
                await _settle(store.complete(key, Completion(outcome.status, outcome.outcome)))
            return outcome
        finally:
            if key is not None and not finished:
                if still_running is not None:
                    # The thread runs on: keep the claim (retries get 409) until it ends.
                    _settle_when_done(key, still_running)
                else:
                    # Transient failures, crashes and cancellation (shutdown grace
                    # exceeded) give the key back so Cloud Tasks' retry can run it.
                    await _settle(store.release(key))

    def _settle_when_done(key: str, thread: asyncio.Future[Any]) -> None:
        async def settle() -> None:
            try:
                await thread
            except Exception:
                logger.warning("abandoned handler thread failed; the task's retry will run it")
                await _settle(store.release(key))
                return
            logger.warning(
                "abandoned handler thread finished after its timeout; the task's retry "
                "will be acknowledged without running it again"
            )
            await _settle(store.complete(key, Completion(200, "ok")))

        # Created inside the delivery's log context, so these lines carry its fields.
        background = asyncio.get_running_loop().create_task(settle())
        _background.add(background)
        background.add_done_callback(_background.discard)

    async def _settle(call: Awaitable[None]) -> None:
        # The task's fate is decided; a store failure now only widens the duplicate
        # window (a remembered key lapses with its lease), so log it and answer.
        try:
            await call
        except Exception:
            logger.exception("idempotency store failed to record the outcome")

    async def _run(ctx: TaskContext, body: bytes) -> _Outcome:
        task_type = task_registry.get(ctx.task_type)
        if task_type is None:
            return await _dead_letter(
                ctx,
                body,
                f"unknown task type {ctx.task_type!r}; this worker handles "
                f"{', '.join(task_registry.names())}",
            )
        try:
            payload = task_type.payload.model_validate_json(body or b"{}")
        except ValidationError as exc:
            return await _dead_letter(ctx, body, f"invalid payload: {_summarise(exc)}")
        deadline = asyncio.timeout(task_type.timeout_s)
        running = start_handler(task_type, payload, ctx)
        thread = running if isinstance(running, asyncio.Future) else None
        try:
            async with deadline:
                # shield: a timeout stops the waiting; the thread cannot be stopped.
                result = await (asyncio.shield(thread) if thread is not None else running)
        except TimeoutError as exc:
            if deadline.expired():
                outcome = _Outcome(
                    status=503,
                    outcome="retry",
                    body={"status": "retry"},
                    severity=logging.WARNING,
                ).with_reason(f"handler exceeded its timeout of {task_type.timeout_s:g} s")
                if thread is not None and not thread.done():
                    outcome.still_running = thread
                return outcome
            # The handler's own TimeoutError (a library's): unforeseen, like any other.
            return _Outcome(
                status=500,
                outcome="error",
                body={"status": "error"},
                severity=logging.ERROR,
                exc_info=exc,
            )
        except TransientError as exc:
            retry_after = exc.retry_after_header
            return _Outcome(
                status=exc.status,
                outcome="retry",
                body={"status": "retry"},
                headers={"Retry-After": retry_after} if retry_after else {},
                severity=logging.WARNING,
            ).with_reason(exc.message)
        except PermanentError as exc:
            return await _dead_letter(ctx, body, exc.message)
        except Exception as exc:
            # A bug or an unforeseen failure: retry, since the fix may ship before
            # the queue gives up, and say so loudly with the stack trace.
            return _Outcome(
                status=500,
                outcome="error",
                body={"status": "error"},
                severity=logging.ERROR,
                exc_info=exc,
            )
        try:
            rendered = to_jsonable_python(result, fallback=str)
        except Exception:  # the work is done; an odd return value must not undo that
            logger.warning("handler result is not serialisable; returning its repr")
            rendered = repr(result)[:1000]
        return _Outcome(status=200, outcome="ok", body={"status": "ok", "result": rendered})

    async def _dead_letter(ctx: TaskContext, body: bytes, reason: str) -> _Outcome:
        letter = DeadLetter(
            task_type=ctx.task_type,
            reason=reason,
            body=body,
            # Everything needed to replay the task, but never the caller's credentials.
            headers={k: v for k, v in ctx.headers.items() if k not in _SECRET_HEADERS},
            task_name=ctx.task_name,
            queue_name=ctx.queue_name,
        )
        log_dead_letter(letter)
        if dead_letter_sink is not None:
            try:
                await dead_letter_sink.record(letter)
            except Exception as exc:
                return _Outcome(
                    status=503,
                    outcome="retry",
                    body={"status": "retry"},
                    headers={"Retry-After": str(DEPENDENCY_RETRY_AFTER_S)},
                    severity=logging.ERROR,
                    exc_info=exc,
                ).with_reason("dead-letter sink failed; retrying so the letter is not lost")
        return _Outcome(
            status=200,
            outcome="dead_letter",
            body={"status": "dead_letter", "reason": reason},
            severity=logging.WARNING,  # the dead-letter entry itself is the ERROR
        )

    async def _read_body(request: Request, headers: Mapping[str, str]) -> bytes | None:
        """The whole body, or None above the Cloud Tasks size limit."""
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_TASK_BYTES:
            return None
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

    async def misrouted(request: Request, exc: Exception) -> Response:
        # Cloud Tasks retries a 404/405 until the queue gives up: say so in the log,
        # with what identifies the task, or the attempts are invisible.
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        headers = {k: v for k, v in request.headers.items() if k.startswith("x-cloudtasks-")}
        logger.warning(
            "no route for %s %s: %d (tasks are POST %s<type>)",
            request.method,
            request.url.path,
            status,
            TASK_ROUTE_PREFIX,
            extra={"fields": {"outcome": "no_route", "status": status, "headers": headers}},
        )
        allow = exc.headers if isinstance(exc, HTTPException) else None  # 405's Allow
        return JSONResponse({"status": "no_route"}, status_code=status, headers=allow)

    app = Starlette(
        routes=[
            Route(HEALTH_ROUTE, healthz, methods=["GET"]),
            Route(TASK_ROUTE_PREFIX + "{type}", handle_task, methods=["POST"]),
        ],
        exception_handlers={404: misrouted, 405: misrouted},
        lifespan=lifespan,
    )
    app.state.drain = drain
    app.state.settings = settings
    app.state.registry = task_registry
    app.state.store = store
    return app


_SECRET_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})
# Tasks settling abandoned handler threads; referenced so they are not collected.
_background: set[asyncio.Task[None]] = set()


def _summarise(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:10]:
        location = ".".join(str(p) for p in error["loc"]) or "(body)"
        parts.append(f"{location}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


app = create_app()
