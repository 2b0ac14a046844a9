"""Which Cloud Tasks API to talk to, the clients for it, and the retry policy.

Google's API is the default (Application Default Credentials). An emulator is
selected by ``CLOUD_TASKS_EMULATOR_HOST`` (``host:port``, which wins) or by
``emulator_host`` in the outputs: gRPC then goes over an insecure channel, and
REST goes to the emulator's HTTP URL (``emulator_url``) with anonymous
credentials. Retries use ``google.api_core.retry`` (exponential backoff with
full jitter, bounded by a deadline and a number of attempts) and cover only
transient codes; they are safe because every create carries a task name chosen
before the first attempt, so a retried create cannot make a second task.

The async enqueuer (which bulk runs use) makes the first attempt of each create
straight on the transport's stub (``create_task_metadata``, ``next_attempt``): the
official message types and channel, the same metadata the generated client sends,
without the per-call wrapping that cost about a tenth of the client's CPU per
task. A transient failure continues on the generated client's retry, so every
attempt after the first is the same as before.

This module deliberately does not retry INVALID_ARGUMENT, NOT_FOUND or
permission errors (retrying cannot fix them), and offers no async REST client:
google-cloud-tasks has none, so the async enqueuer runs the REST client in threads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import grpc
import requests
from google.api_core import exceptions as gexc, retry as gretry, retry_async as gretry_async
from google.api_core.client_options import ClientOptions
from google.api_core.gapic_v1 import routing_header
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import (
    CloudTasksGrpcAsyncIOTransport,
    CloudTasksGrpcTransport,
)
from google.cloud.tasks_v2.services.cloud_tasks.transports.base import DEFAULT_CLIENT_INFO

from contract.names import EMULATOR_HOST_ENV
from contract.resources import CLOUDTASKS_ENQUEUER_ROLE, SERVICE_ACCOUNT_USER_ROLE
from enqueue.defaults import TRANSPORTS, RetryPolicy, Transport
from enqueue.errors import ClientSetupError
from enqueue.outputs import StackOutputs

# Transient by the Cloud Tasks retry guidance; REST surfaces a dead endpoint as a
# requests ConnectionError rather than UNAVAILABLE, so it is transient too.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.TooManyRequests,  # RESOURCE_EXHAUSTED
    gexc.InternalServerError,
    requests.exceptions.ConnectionError,
)

# A restarted local emulator should be found again within a second, not after
# gRPC's default reconnect backoff that grows to two minutes.
_EMULATOR_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


class AttemptCounter:
    """Counts the attempts of one create and stops retrying at the bound."""

    def __init__(self, max_attempts: int) -> None:
        self.attempts = 1
        self.max_attempts = max_attempts
        self.last_error: Exception | None = None

    def should_retry(self, exc: Exception) -> bool:
        self.last_error = exc
        if not isinstance(exc, TRANSIENT_ERRORS) or self.attempts >= self.max_attempts:
            return False
        self.attempts += 1
        return True


def sync_retry(policy: RetryPolicy, counter: AttemptCounter) -> gretry.Retry:
    return gretry.Retry(
        predicate=counter.should_retry,
        initial=policy.initial,
        maximum=policy.maximum,
        multiplier=policy.multiplier,
        timeout=policy.deadline,
    )


def async_retry(policy: RetryPolicy, counter: AttemptCounter) -> gretry_async.AsyncRetry:
    return gretry_async.AsyncRetry(
        predicate=counter.should_retry,
        initial=policy.initial,
        maximum=policy.maximum,
        multiplier=policy.multiplier,
        timeout=policy.deadline,
    )


# What the generated client adds to every call (library versions), computed once.
_CLIENT_INFO_METADATA = DEFAULT_CLIENT_INFO.to_grpc_metadata()  # type: ignore[no-untyped-call]


def create_task_metadata(parent: str) -> tuple[tuple[str, str], ...]:
    """The metadata ``CloudTasksAsyncClient.create_task`` sends for a queue: the
    library's ``x-goog-api-client`` and the ``x-goog-request-params`` routing header
    (``parent``), which the API uses to route the call to the queue's region."""
    routing = routing_header.to_grpc_metadata((("parent", parent),))  # type: ignore[no-untyped-call]
    return (_CLIENT_INFO_METADATA, routing)


def next_attempt(
    policy: RetryPolicy, counter: AttemptCounter, exc: Exception, elapsed: float
) -> tuple[float, RetryPolicy]:
    """After a failed first attempt: the backoff to sleep and the policy for the rest.

    Raises ``exc`` when it is not to be retried, or ``RetryError`` when the backoff
    would pass the deadline, as ``google.api_core.retry`` does. The sleep is the
    first of ``exponential_sleep_generator`` (uniform in 0..``initial``), and the
    policy returned continues the same progression (its ``initial`` is the next
    ceiling, its ``deadline`` what is left), so the attempts that follow are the
    ones the generated client's retry would have made.
    """
    if not counter.should_retry(exc):
        raise exc
    delay = next(gretry.exponential_sleep_generator(policy.initial, policy.maximum))
    remaining = policy.deadline - elapsed - delay
    if remaining <= 0:
        raise gexc.RetryError(  # type: ignore[no-untyped-call]
            f"Timeout of {policy.deadline:.1f}s exceeded", exc
        )
    rest = replace(
        policy,
        initial=min(policy.initial * policy.multiplier, policy.maximum),
        deadline=remaining,
    )
    return delay, rest


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the API is: Google (``emulator_host`` None) or an emulator."""

    emulator_host: str | None
    emulator_url: str | None

    @property
    def is_emulator(self) -> bool:
        return self.emulator_host is not None or self.emulator_url is not None

    def describe(self, transport: Transport) -> str:
        if not self.is_emulator:
            return f"Cloud Tasks API ({transport})"
        where = self.emulator_host if transport == "grpc" else self.emulator_url
        return f"emulator at {where} ({transport})"


def resolve_endpoint(outputs: StackOutputs, env: Mapping[str, str] | None = None) -> Endpoint:
    """The environment variable wins over the outputs file, like Google's emulators."""
    env = os.environ if env is None else env
    from_env = env.get(EMULATOR_HOST_ENV, "").strip()
    if from_env:
        if ":" not in from_env or "/" in from_env:
            raise ClientSetupError(
                f"{EMULATOR_HOST_ENV}={from_env!r} must be HOST:PORT of the emulator's gRPC API, "
                "e.g. 127.0.0.1:8123"
            )
        return Endpoint(emulator_host=from_env, emulator_url=outputs.emulator_url)
    return Endpoint(emulator_host=outputs.emulator_host, emulator_url=outputs.emulator_url)


def _google_client(factory: Callable[..., Any], **kwargs: Any) -> Any:
    try:
        return factory(**kwargs)
    except auth_exceptions.DefaultCredentialsError as exc:
        raise ClientSetupError(
            "no Google credentials for the Cloud Tasks API: run `gcloud auth "
            "application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS), or set "
            f"{EMULATOR_HOST_ENV} to use the emulator ({exc})"
        ) from None


def make_client(
    outputs: StackOutputs, transport: Transport = "grpc", *, env: Mapping[str, str] | None = None
) -> tasks_v2.CloudTasksClient:
    """A synchronous ``CloudTasksClient`` for the endpoint the outputs/env select."""
    endpoint = resolve_endpoint(outputs, env)
    if transport not in TRANSPORTS:
        raise ClientSetupError(
            f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}"
        )
    if not endpoint.is_emulator:
        client: tasks_v2.CloudTasksClient = _google_client(
            tasks_v2.CloudTasksClient, transport=transport
        )
        return client
    if transport == "grpc":
        if endpoint.emulator_host is None:
            raise ClientSetupError(
                f"gRPC to the emulator needs its host:port: set {EMULATOR_HOST_ENV} or "
                "emulator_host in the outputs, or use --transport rest"
            )
        channel = grpc.insecure_channel(endpoint.emulator_host, options=_EMULATOR_CHANNEL_OPTIONS)
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    if endpoint.emulator_url is None:
        raise ClientSetupError(
            "REST to the emulator needs its HTTP URL (emulator_url in the outputs file, "
            "written by the local stack); or use --transport grpc"
        )
    return tasks_v2.CloudTasksClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=endpoint.emulator_url.rstrip("/")),
    )


def make_async_client(
    outputs: StackOutputs, *, env: Mapping[str, str] | None = None
) -> tasks_v2.CloudTasksAsyncClient:
    """A gRPC ``CloudTasksAsyncClient``; call it from inside the running event loop."""
    endpoint = resolve_endpoint(outputs, env)
    if not endpoint.is_emulator:
        client: tasks_v2.CloudTasksAsyncClient = _google_client(tasks_v2.CloudTasksAsyncClient)
        return client
    if endpoint.emulator_host is None:
        raise ClientSetupError(
            f"gRPC to the emulator needs its host:port: set {EMULATOR_HOST_ENV} or "
            "emulator_host in the outputs"
        )
    channel = grpc.aio.insecure_channel(endpoint.emulator_host, options=_EMULATOR_CHANNEL_OPTIONS)
    return tasks_v2.CloudTasksAsyncClient(transport=CloudTasksGrpcAsyncIOTransport(channel=channel))


def describe_api_error(
    exc: Exception,
    *,
    outputs: StackOutputs,
    endpoint: str,
    attempts: int,
    queue: str | None = None,
) -> str:
    """One line saying what the API answered about a task for ``queue`` (a full path)."""
    queue = queue or outputs.queue
    tried = f" after {attempts} attempts" if attempts > 1 else ""
    if isinstance(exc, gexc.RetryError) and exc.cause is not None:
        exc = exc.cause
    if isinstance(exc, gexc.NotFound):
        return (
            f"queue {queue} not found on the {endpoint} (NOT_FOUND: {exc.message}): "
            "check the stack is up and the outputs are current"
        )
    if isinstance(exc, gexc.PermissionDenied):
        return (
            f"permission denied on {queue} (PERMISSION_DENIED: {exc.message}): the "
            f"caller needs {CLOUDTASKS_ENQUEUER_ROLE} on the queue and {SERVICE_ACCOUNT_USER_ROLE} "
            f"on {outputs.invoker_email}"
        )
    if isinstance(exc, gexc.Unauthenticated):
        return (
            f"not authenticated to the {endpoint} (UNAUTHENTICATED: {exc.message}): run "
            "`gcloud auth application-default login`"
        )
    if isinstance(exc, gexc.FailedPrecondition | gexc.InvalidArgument | gexc.OutOfRange):
        return f"the {endpoint} rejected the task ({exc.grpc_status_code}: {exc.message})"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"could not connect to the {endpoint}{tried}: is it running? ({exc})"
    if isinstance(exc, gexc.GoogleAPICallError):
        code = exc.grpc_status_code.name if exc.grpc_status_code else exc.code
        hint = ": is it running and reachable?" if isinstance(exc, TRANSIENT_ERRORS) else ""
        return f"the {endpoint} answered {code}{tried} ({exc.message}){hint}"
    return f"call to the {endpoint} failed{tried}: {type(exc).__name__}: {exc}"
