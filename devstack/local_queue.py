"""The planned queue as the emulator's Queue message, and what about it cannot be local.

`QueueSpec` wraps the plan's typed queue view (`plan.views.PlannedQueue`) and
builds the `tasks_v2.Queue` that `devstack.runtime` creates in the emulator
with exactly the planned settings; `queue_problems` lists what the local stack
refuses (an OAuth target, unknown enums) and what it substitutes (a
queue-level `uriOverride` points at the local worker).

Deliberately not here: calling the emulator (`devstack.runtime`) and judging
the other resources (`devstack.realise`).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.cloud import tasks_v2
from google.protobuf import duration_pb2

from contract.durations import DurationError, parse_duration_s
from plan.views import HttpTarget, PlannedQueue

RUNNING = tasks_v2.Queue.State(tasks_v2.Queue.State.RUNNING).name
PAUSED = tasks_v2.Queue.State(tasks_v2.Queue.State.PAUSED).name


class QueueNotRealisable(ValueError):
    """A planned queue value the emulator's Queue message cannot carry."""


@dataclass(frozen=True)
class QueueSpec:
    """The planned queue, to be created in the emulator."""

    planned: PlannedQueue

    @property
    def path(self) -> str:  # projects/P/locations/L/queues/Q
        return self.planned.path

    @property
    def parent(self) -> str:
        return self.path.rsplit("/queues/", 1)[0]

    @property
    def desired_state(self) -> str:
        return self.planned.desired_state or RUNNING

    def to_queue(self, worker_host: str, worker_port: int) -> tasks_v2.Queue:
        """The Queue message with exactly the planned settings.

        The one local substitution: a queue-level `uriOverride` keeps its path,
        query and enforce mode but points at the local worker (http, host, port).
        """
        planned = self.planned
        queue = tasks_v2.Queue(name=self.path)
        rate = planned.rate_limits
        if rate is not None:
            queue.rate_limits = tasks_v2.RateLimits(
                max_dispatches_per_second=float(rate.max_dispatches_per_second or 0),
                max_concurrent_dispatches=int(rate.max_concurrent_dispatches or 0),
            )
        retry = planned.retry_config
        if retry is not None:
            queue.retry_config = tasks_v2.RetryConfig(
                max_attempts=int(retry.max_attempts or 0),
                min_backoff=_duration(retry.min_backoff),
                max_backoff=_duration(retry.max_backoff),
                max_doublings=int(retry.max_doublings or 0),
                max_retry_duration=_duration(retry.max_retry_duration),
            )
        if planned.logging_sampling_ratio is not None:
            queue.stackdriver_logging_config = tasks_v2.StackdriverLoggingConfig(
                sampling_ratio=float(planned.logging_sampling_ratio or 0)
            )
        if planned.http_target is not None:
            queue.http_target = _http_target(planned.http_target, worker_host, worker_port)
        return queue


def _duration(value: str | None) -> duration_pb2.Duration | None:
    if value is None or value == "":
        return None
    try:
        seconds = parse_duration_s(value, what="retry duration")
    except DurationError as exc:
        raise QueueNotRealisable(
            f"retry duration {value!r} is not like '10s' or '0.5s' (seconds with an 's')"
        ) from exc
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1_000_000_000))
    return duration


def _http_target(target: HttpTarget, host: str, port: int) -> tasks_v2.HttpTarget:
    out = tasks_v2.HttpTarget()
    if target.http_method:
        out.http_method = tasks_v2.HttpMethod.__members__[target.http_method]
    for key, value in target.header_overrides:
        out.header_overrides.append(
            tasks_v2.HttpTarget.HeaderOverride(
                header=tasks_v2.HttpTarget.Header(key=key, value=value)
            )
        )
    if target.oidc_token is not None:
        out.oidc_token = tasks_v2.OidcToken(
            service_account_email=target.oidc_token.service_account_email,
            audience=target.oidc_token.audience,
        )
    uri = target.uri_override
    if uri is not None:
        override = tasks_v2.UriOverride(
            scheme=tasks_v2.UriOverride.Scheme.HTTP, host=host, port=port
        )
        if uri.path is not None:
            override.path_override = tasks_v2.PathOverride(path=uri.path)
        if uri.query is not None:
            override.query_override = tasks_v2.QueryOverride(query_params=uri.query)
        if uri.enforce_mode:
            override.uri_override_enforce_mode = (
                tasks_v2.UriOverride.UriOverrideEnforceMode.__members__[uri.enforce_mode]
            )
        out.uri_override = override
    return out


def queue_problems(queue: PlannedQueue, substitutions: list[str]) -> list[str]:
    """What in the planned queue the local stack refuses; substitutions are appended."""
    problems: list[str] = []
    if queue.retry_config is not None:
        retry = queue.retry_config
        for value in (retry.min_backoff, retry.max_backoff, retry.max_retry_duration):
            try:
                _duration(value)
            except QueueNotRealisable as exc:
                problems.append(str(exc))
    if (queue.desired_state or RUNNING) not in (RUNNING, PAUSED):
        problems.append(f"queue desiredState {queue.desired_state!r} is not RUNNING or PAUSED")
    target = queue.http_target
    if target is None:
        return problems
    if target.uses_oauth_token:
        problems.append(
            "the queue's httpTarget uses an OAuth access token: Cloud Run rejects those "
            "(401); use oidcToken with the service URL as audience"
        )
    if target.http_method and target.http_method not in tasks_v2.HttpMethod.__members__:
        problems.append(
            f"httpTarget.httpMethod {target.http_method!r} is not a Cloud Tasks HTTP method"
        )
    uri = target.uri_override
    if uri is not None:
        modes = tasks_v2.UriOverride.UriOverrideEnforceMode.__members__
        if uri.enforce_mode and uri.enforce_mode not in modes:
            problems.append(
                f"uriOverrideEnforceMode {uri.enforce_mode!r} is not ALWAYS or IF_NOT_EXISTS"
            )
        substitutions.append(
            f"queue uriOverride: scheme/host/port {uri.scheme}://{uri.host}"
            f"{':' + uri.port if uri.port else ''} become http://127.0.0.1:<worker "
            "port> (path, query and enforce mode as planned)"
        )
    return problems
