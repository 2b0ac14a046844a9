"""Typed views of the planned resources that consumers read.

Each view is built from one `PlannedResource` (`View.of(resource)`) and exposes
the fields the local realisation, the renderers and the policy check need with
their types: a queue's rate limits, retry config and HTTP target; a Cloud Run
service's containers, runtime account and limits; an IAM grant's role, member
and target; a service account's email; the stack exports. Reading the engine's
camelCase property maps, with their optional levels, happens here and only here.

Values keep the type the plan JSON gives them (a rate of 5 stays the int 5), so
a rendering of a view prints what the plan holds. Deliberately not here: any
judgement of the values (the realisation and the policy rules judge them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contract.names import (
    OUTPUT_AUDIENCE,
    OUTPUT_DISPATCH_DEADLINE,
    OUTPUT_DISPATCH_DEADLINES,
    OUTPUT_INVOKER_EMAIL,
    OUTPUT_LOCATION,
    OUTPUT_PROJECT,
    OUTPUT_QUEUE,
    OUTPUT_QUEUES,
    OUTPUT_ROUTES,
    OUTPUT_SERVICE_URL,
)
from contract.routing import DEFAULT_QUEUE_KEY

if TYPE_CHECKING:
    from plan.model import PlannedResource


def _map(value: object) -> Mapping[str, Any]:
    """A nested property map, or an empty one where the level is absent or not a map."""
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def last_segment(value: object) -> str:
    """`projects/p/locations/l/services/s` -> `s` (a bare name stays as it is)."""
    return str(value).rstrip("/").rsplit("/", 1)[-1]


# --- queue ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimits:
    max_dispatches_per_second: float | None
    max_concurrent_dispatches: int | None


@dataclass(frozen=True)
class RetryConfig:
    max_attempts: int | None
    min_backoff: str | None  # durations as the provider writes them: "5s", "0.5s"
    max_backoff: str | None
    max_doublings: int | None
    max_retry_duration: str | None


@dataclass(frozen=True)
class OidcToken:
    service_account_email: str
    audience: str


@dataclass(frozen=True)
class UriOverride:
    scheme: str | None
    host: str | None
    port: str | None
    path: str | None  # pathOverride.path
    query: str | None  # queryOverride.queryParams
    enforce_mode: str | None


@dataclass(frozen=True)
class HttpTarget:
    """A queue-level HTTP target (queue.proto `HttpTarget`)."""

    http_method: str | None
    header_overrides: tuple[tuple[str, str], ...]  # (key, value)
    oidc_token: OidcToken | None
    uses_oauth_token: bool
    uri_override: UriOverride | None

    @classmethod
    def of(cls, target: Mapping[str, Any]) -> HttpTarget:
        oidc = _map(target.get("oidcToken"))
        uri = target.get("uriOverride")
        override = None
        if isinstance(uri, Mapping):
            override = UriOverride(
                scheme=_text(uri.get("scheme")),
                host=_text(uri.get("host")),
                port=_text(uri.get("port")) if uri.get("port") else None,
                path=_text(_map(uri.get("pathOverride")).get("path")),
                query=_text(_map(uri.get("queryOverride")).get("queryParams")),
                enforce_mode=_text(uri.get("uriOverrideEnforceMode")) or None,
            )
        headers = tuple(
            (str(_map(h.get("header")).get("key", "")), str(_map(h.get("header")).get("value", "")))
            for h in _list(target.get("headerOverrides"))
            if isinstance(h, Mapping)
        )
        return cls(
            http_method=_text(target.get("httpMethod")) or None,
            header_overrides=headers,
            oidc_token=(
                OidcToken(
                    service_account_email=str(oidc.get("serviceAccountEmail", "")),
                    audience=str(oidc.get("audience", "")),
                )
                if oidc
                else None
            ),
            uses_oauth_token=bool(target.get("oauthToken")),
            uri_override=override,
        )


@dataclass(frozen=True)
class PlannedQueue:
    """A `gcp:cloudtasks/queue:Queue`."""

    resource: PlannedResource
    path: str  # the computed id: projects/P/locations/L/queues/Q ("" when not computed)
    name: str  # the queue id (outputs.name, else the planned name)
    desired_state: str | None  # RUNNING, PAUSED, or unset
    rate_limits: RateLimits | None
    retry_config: RetryConfig | None
    logging_sampling_ratio: float | None
    http_target: HttpTarget | None

    @classmethod
    def of(cls, resource: PlannedResource) -> PlannedQueue:
        inputs = resource.inputs
        rate = _map(inputs.get("rateLimits"))
        retry = _map(inputs.get("retryConfig"))
        logging = _map(inputs.get("stackdriverLoggingConfig"))
        target = inputs.get("httpTarget")
        return cls(
            resource=resource,
            path=str(resource.outputs.get("id") or ""),
            name=str(resource.outputs.get("name", inputs.get("name"))),
            desired_state=_text(inputs.get("desiredState")),
            rate_limits=(
                RateLimits(
                    max_dispatches_per_second=rate.get("maxDispatchesPerSecond"),
                    max_concurrent_dispatches=rate.get("maxConcurrentDispatches"),
                )
                if rate
                else None
            ),
            retry_config=(
                RetryConfig(
                    max_attempts=retry.get("maxAttempts"),
                    min_backoff=_text(retry.get("minBackoff")),
                    max_backoff=_text(retry.get("maxBackoff")),
                    max_doublings=retry.get("maxDoublings"),
                    max_retry_duration=_text(retry.get("maxRetryDuration")),
                )
                if retry
                else None
            ),
            logging_sampling_ratio=logging.get("samplingRatio") if logging else None,
            http_target=HttpTarget.of(target) if isinstance(target, Mapping) and target else None,
        )


# --- Cloud Run service ----------------------------------------------------------------------


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str
    from_secret: bool  # valueSource (Secret Manager) instead of a value
    secret: str = ""  # the Secret Manager secret, when from_secret


@dataclass(frozen=True)
class Container:
    commands: tuple[str, ...]
    args: tuple[str, ...]
    envs: tuple[EnvVar, ...]
    startup_probe_path: str | None
    sets_resources: bool  # cpu/memory limits

    @classmethod
    def of(cls, container: Mapping[str, Any]) -> Container:
        probe = _map(_map(container.get("startupProbe")).get("httpGet")).get("path")
        return cls(
            commands=tuple(str(c) for c in _list(container.get("commands"))),
            args=tuple(str(a) for a in _list(container.get("args"))),
            envs=tuple(
                EnvVar(
                    name=str(e.get("name", "")),
                    value=str(e.get("value", "")),
                    from_secret=bool(e.get("valueSource")),
                    secret=str(
                        _map(_map(e.get("valueSource")).get("secretKeyRef")).get("secret", "")
                    ),
                )
                for e in _list(container.get("envs"))
                if isinstance(e, Mapping)
            ),
            startup_probe_path=_text(probe) or None,
            sets_resources=bool(container.get("resources")),
        )


@dataclass(frozen=True)
class PlannedService:
    """A `gcp:cloudrunv2/service:Service`."""

    resource: PlannedResource
    name: str | None  # the planned service name (inputs.name)
    computed_name: str | None  # outputs.name
    ingress: str | None
    runtime_account: str | None  # template.serviceAccount (an email)
    deletion_protection: bool | None
    invoker_iam_disabled: bool
    containers: tuple[Container, ...]
    limits: tuple[tuple[str, Any], ...]  # set template.timeout/concurrency/scaling, as planned
    uri: str | None

    @property
    def identifiers(self) -> set[str]:
        """Every short name the plan may use for this service (planned, computed, logical)."""
        values = (
            self.name,
            self.computed_name,
            self.resource.outputs.get("id"),
            self.resource.name,
        )
        return {last_segment(v) for v in values if v}

    @classmethod
    def of(cls, resource: PlannedResource) -> PlannedService:
        inputs = resource.inputs
        template = _map(inputs.get("template"))
        return cls(
            resource=resource,
            name=_text(inputs.get("name")),
            computed_name=_text(resource.outputs.get("name")),
            ingress=_text(inputs.get("ingress")),
            runtime_account=_text(template.get("serviceAccount")),
            deletion_protection=inputs.get("deletionProtection"),
            invoker_iam_disabled=bool(inputs.get("invokerIamDisabled")),
            containers=tuple(
                Container.of(c) for c in _list(template.get("containers")) if isinstance(c, Mapping)
            ),
            limits=tuple(
                (key, template[key])
                for key in ("timeout", "maxInstanceRequestConcurrency", "scaling")
                if template.get(key)
            ),
            uri=_text(resource.outputs.get("uri")),
        )


# --- identities and grants -------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceAccount:
    """A `gcp:serviceaccount/account:Account`."""

    resource: PlannedResource
    account_id: str | None
    email: str | None  # computed
    full_name: str | None  # projects/P/serviceAccounts/EMAIL, computed

    @classmethod
    def of(cls, resource: PlannedResource) -> ServiceAccount:
        return cls(
            resource=resource,
            account_id=_text(resource.inputs.get("accountId")),
            email=_text(resource.outputs.get("email")),
            full_name=_text(resource.outputs.get("name")),
        )


@dataclass(frozen=True)
class ServiceAgent:
    """A `gcp:projects/serviceIdentity:ServiceIdentity` (a Google-managed agent)."""

    resource: PlannedResource
    service: str | None
    email: str | None

    @classmethod
    def of(cls, resource: PlannedResource) -> ServiceAgent:
        return cls(
            resource=resource,
            service=_text(resource.inputs.get("service")),
            email=_text(resource.outputs.get("email")),
        )


@dataclass(frozen=True)
class IamGrant:
    """A non-authoritative IAM member resource: one role for one member on one target."""

    resource: PlannedResource
    role: str
    member: str
    target: str  # the service/queue/bucket name, the account's full name, or the project

    @classmethod
    def of(cls, resource: PlannedResource) -> IamGrant:
        inputs = resource.inputs
        target = (
            inputs.get("name")
            or inputs.get("serviceAccountId")
            or inputs.get("bucket")
            or inputs.get("project")
        )
        return cls(
            resource=resource,
            role=str(inputs.get("role", "")),
            member=str(inputs.get("member", "")),
            target=str(target or ""),
        )


# --- build artefacts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """A `docker-build:index:Image` (the worker image built from service/)."""

    resource: PlannedResource
    tags: tuple[str, ...]

    @classmethod
    def of(cls, resource: PlannedResource) -> Image:
        return cls(
            resource=resource, tags=tuple(str(t) for t in _list(resource.inputs.get("tags")))
        )


@dataclass(frozen=True)
class Repository:
    """A `gcp:artifactregistry/repository:Repository`."""

    resource: PlannedResource
    repository_id: str | None

    @classmethod
    def of(cls, resource: PlannedResource) -> Repository:
        return cls(resource=resource, repository_id=_text(resource.inputs.get("repositoryId")))


# --- stack exports ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Exports:
    """The stack outputs the program exports (names in `contract.names`); None when absent."""

    project: str | None
    location: str | None
    queue: str | None
    service_url: str | None
    audience: str | None
    invoker_email: str | None
    dispatch_deadline: str | None
    queues: dict[str, str]
    """Queue key -> queue path; a plan from before several queues: `default` -> `queue`."""
    routes: dict[str, str]
    """Task type -> queue key (empty: every type goes to `default`)."""
    dispatch_deadlines: dict[str, str]
    """Queue key -> the tasks' dispatch deadline ("60s")."""

    def queue_keys_by_path(self) -> dict[str, str]:
        """Queue path -> its key."""
        return {path: key for key, path in self.queues.items()}

    def routes_to(self, key: str) -> list[str]:
        """The task types routed to queue `key`, sorted."""
        return sorted(t for t, k in self.routes.items() if k == key)

    @classmethod
    def of(cls, outputs: Mapping[str, Any]) -> Exports:
        def get(key: str) -> str | None:
            value = outputs.get(key)
            return None if value in (None, "") else str(value)

        def strings(key: str) -> dict[str, str]:
            return {str(k): str(v) for k, v in _map(outputs.get(key)).items()}

        queue, deadline = get(OUTPUT_QUEUE), get(OUTPUT_DISPATCH_DEADLINE)
        queues = strings(OUTPUT_QUEUES) or ({DEFAULT_QUEUE_KEY: queue} if queue else {})
        deadlines = strings(OUTPUT_DISPATCH_DEADLINES) or (
            {DEFAULT_QUEUE_KEY: deadline} if deadline else {}
        )

        return cls(
            project=get(OUTPUT_PROJECT),
            location=get(OUTPUT_LOCATION),
            queue=get(OUTPUT_QUEUE),
            service_url=get(OUTPUT_SERVICE_URL),
            audience=get(OUTPUT_AUDIENCE),
            invoker_email=get(OUTPUT_INVOKER_EMAIL),
            dispatch_deadline=deadline,
            queues=queues,
            routes=strings(OUTPUT_ROUTES),
            dispatch_deadlines=deadlines,
        )
