"""Decide what each resource of a plan becomes on this machine.

Input: a plan in the JSON shape of `python -m devstack plan --format json`.
Output: a `LocalRealisation` naming the queue to create in the emulator, the
worker process to start, the accounts allowed to invoke it, and a verdict for
every resource: realised, no local effect (with the reason), or refused. A plan
with any refused resource is not realised at all: the error lists each refusal
and how to fix it, so nothing in the program is ever silently ignored.

Deliberately not here: starting processes or calling APIs (`devstack.runtime`
does that with this module's result), and evaluating the Pulumi program
(`devstack.plan`). The module is pure so that the verdicts are unit-tested
against the committed plan snapshots.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from google.cloud import tasks_v2
from google.protobuf import duration_pb2

from contract.names import (
    HEALTH_ROUTE,
    OUTPUT_AUDIENCE,
    OUTPUT_INVOKER_EMAIL,
    OUTPUT_LOCATION,
    OUTPUT_PROJECT,
    OUTPUT_QUEUE,
    WORKER_ENV_ALLOWED_INVOKERS,
    WORKER_ENV_AUDIENCE,
    WORKER_ENV_CERTS_URL,
    WORKER_ENV_PORT,
)

Verdict = Literal["realised", "no local effect", "refused"]

QUEUE_TYPE = "gcp:cloudtasks/queue:Queue"
SERVICE_TYPE = "gcp:cloudrunv2/service:Service"
SERVICE_IAM_MEMBER_TYPE = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
ACCOUNT_TYPE = "gcp:serviceaccount/account:Account"
RUN_INVOKER_ROLE = "roles/run.invoker"

# Resources whose whole job is done by Google Cloud and has nothing to act on
# here, with the reason shown by `up` and `status`.
NO_LOCAL_EFFECT: dict[str, str] = {
    "gcp:projects/service:Service": "API enablement: the emulator serves every API locally",
    "gcp:projects/serviceIdentity:ServiceIdentity": (
        "the Cloud Tasks service agent: the emulator dispatches as itself"
    ),
    "gcp:artifactregistry/repository:Repository": (
        "image registry: the worker runs from source with the container's command"
    ),
    "docker-build:index:Image": (
        "image build: the worker runs from source (same `python -m service` as the image CMD)"
    ),
    "gcp:projects/iAMMember:IAMMember": (
        "project role (logging/metrics writer): local logs go to .devstack/<stack>/*.log"
    ),
    "gcp:serviceaccount/iAMMember:IAMMember": (
        "actAs on a service account: the emulator mints tokens without checking it"
    ),
    "gcp:cloudtasks/queueIamMember:QueueIamMember": (
        "queue role (enqueuer/viewer): the emulator's API is unauthenticated"
    ),
    "gcp:projects/iAMCustomRole:IAMCustomRole": "custom role: IAM is not enforced locally",
}

# Member prefixes whose identity a locally verified ID token can carry.
_EMAIL_MEMBER_PREFIXES = ("serviceAccount:", "user:")
_PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")

# When nothing may invoke the worker (no run.invoker member), Cloud Run answers 403
# to every caller. The worker checks tokens only when its allow-list is set, so an
# address that no token can carry (.invalid is reserved, RFC 2606) keeps the check
# on while matching nobody.
NOBODY_INVOKER = "no-run-invoker-bound@devstack.invalid"


class PlanNotRealisable(Exception):
    """The plan has resources or values this machine cannot stand in for."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"the plan cannot be realised locally:\n{lines}")


@dataclass(frozen=True)
class ResourceVerdict:
    urn: str
    type: str
    name: str
    verdict: Verdict
    detail: str

    def to_json(self) -> dict[str, str]:
        return {
            "type": self.type,
            "name": self.name,
            "verdict": self.verdict,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class QueueSpec:
    """The planned queue, in the Pulumi engine's camelCase input shape."""

    path: str  # projects/P/locations/L/queues/Q
    inputs: Mapping[str, Any]

    @property
    def parent(self) -> str:
        return self.path.rsplit("/queues/", 1)[0]

    @property
    def desired_state(self) -> str:
        return str(self.inputs.get("desiredState") or "RUNNING")

    def to_queue(self, worker_host: str, worker_port: int) -> tasks_v2.Queue:
        """The Queue message with exactly the planned settings.

        The one local substitution: a queue-level `uriOverride` keeps its path,
        query and enforce mode but points at the local worker (http, host, port).
        """
        queue = tasks_v2.Queue(name=self.path)
        rate = self.inputs.get("rateLimits") or {}
        if rate:
            queue.rate_limits = tasks_v2.RateLimits(
                max_dispatches_per_second=float(rate.get("maxDispatchesPerSecond") or 0),
                max_concurrent_dispatches=int(rate.get("maxConcurrentDispatches") or 0),
            )
        retry = self.inputs.get("retryConfig") or {}
        if retry:
            queue.retry_config = tasks_v2.RetryConfig(
                max_attempts=int(retry.get("maxAttempts") or 0),
                min_backoff=_duration(retry.get("minBackoff")),
                max_backoff=_duration(retry.get("maxBackoff")),
                max_doublings=int(retry.get("maxDoublings") or 0),
                max_retry_duration=_duration(retry.get("maxRetryDuration")),
            )
        logging = self.inputs.get("stackdriverLoggingConfig") or {}
        if logging:
            queue.stackdriver_logging_config = tasks_v2.StackdriverLoggingConfig(
                sampling_ratio=float(logging.get("samplingRatio") or 0)
            )
        target = self.inputs.get("httpTarget")
        if target:
            queue.http_target = _http_target(target, worker_host, worker_port)
        return queue


def _duration(value: object) -> duration_pb2.Duration | None:
    if value is None or value == "":
        return None
    text = str(value)
    duration = duration_pb2.Duration()
    try:
        duration.FromJsonString(text if text.endswith("s") else f"{text}s")
    except ValueError as exc:
        raise PlanNotRealisable(
            [f"retry duration {text!r} is not like '10s' or '0.5s' (seconds with an 's')"]
        ) from exc
    return duration


def _http_target(target: Mapping[str, Any], host: str, port: int) -> tasks_v2.HttpTarget:
    out = tasks_v2.HttpTarget()
    method = target.get("httpMethod")
    if method:
        out.http_method = tasks_v2.HttpMethod.__members__[str(method)]
    for override in target.get("headerOverrides") or []:
        header = override.get("header") or {}
        out.header_overrides.append(
            tasks_v2.HttpTarget.HeaderOverride(
                header=tasks_v2.HttpTarget.Header(
                    key=str(header.get("key", "")), value=str(header.get("value", ""))
                )
            )
        )
    oidc = target.get("oidcToken")
    if oidc:
        out.oidc_token = tasks_v2.OidcToken(
            service_account_email=str(oidc.get("serviceAccountEmail", "")),
            audience=str(oidc.get("audience", "")),
        )
    uri = target.get("uriOverride")
    if uri:
        override = tasks_v2.UriOverride(
            scheme=tasks_v2.UriOverride.Scheme.HTTP, host=host, port=port
        )
        path = (uri.get("pathOverride") or {}).get("path")
        if path is not None:
            override.path_override = tasks_v2.PathOverride(path=str(path))
        query = (uri.get("queryOverride") or {}).get("queryParams")
        if query is not None:
            override.query_override = tasks_v2.QueryOverride(query_params=str(query))
        mode = uri.get("uriOverrideEnforceMode")
        if mode:
            override.uri_override_enforce_mode = (
                tasks_v2.UriOverride.UriOverrideEnforceMode.__members__[str(mode)]
            )
        out.uri_override = override
    return out


@dataclass(frozen=True)
class WorkerSpec:
    """The planned Cloud Run container, as a local process."""

    service_name: str
    command: list[str]
    env: dict[str, str]  # exactly the planned envs
    # Emails the Cloud Run IAM layer lets through (run.invoker members); None
    # when that layer lets everybody through (invokerIamDisabled, allUsers).
    iam_invokers: tuple[str, ...] | None
    health_path: str  # the startup probe's path
    project: str  # what the metadata server would answer on Cloud Run

    def process_env(self, *, host: str, port: int, certs_url: str) -> dict[str, str]:
        """The worker's environment: planned envs plus the local wiring.

        TASKS_ALLOWED_INVOKERS stands in for Cloud Run's IAM check: exactly the
        run.invoker members, narrowed further if the program also sets an
        allow-list of its own (in the cloud both checks apply).
        """
        env = dict(self.env)
        planned = env.get(WORKER_ENV_ALLOWED_INVOKERS)
        app_list = (
            None if planned is None else tuple(e.strip() for e in planned.split(",") if e.strip())
        )
        allowed: tuple[str, ...] | None
        if self.iam_invokers is None:
            allowed = app_list
        elif app_list is None:
            allowed = self.iam_invokers
        else:
            allowed = tuple(e for e in self.iam_invokers if e in app_list)
        if allowed is None:
            # No IAM layer and no allow-list of the program's own: the check is off,
            # and the worker refuses an audience without invokers (fail closed).
            env.pop(WORKER_ENV_ALLOWED_INVOKERS, None)
            env.pop(WORKER_ENV_AUDIENCE, None)
        else:
            env[WORKER_ENV_ALLOWED_INVOKERS] = ",".join(allowed) or NOBODY_INVOKER
        env[WORKER_ENV_PORT] = str(port)
        env["HOST"] = host
        env[WORKER_ENV_CERTS_URL] = certs_url
        # Cloud Run sets these for every container; handlers may log them.
        env.setdefault("K_SERVICE", self.service_name)
        env.setdefault("K_REVISION", f"{self.service_name}-local")
        env.setdefault("K_CONFIGURATION", self.service_name)
        # Stands in for the metadata server, which has no local counterpart (the
        # worker would otherwise wait for a DNS failure on metadata.google.internal).
        env.setdefault("GOOGLE_CLOUD_PROJECT", self.project)
        return env


@dataclass(frozen=True)
class LocalRealisation:
    stack: str
    queue: QueueSpec
    worker: WorkerSpec
    outputs: dict[str, str]  # the plan's stack outputs (service_url replaced at `up`)
    verdicts: list[ResourceVerdict] = field(default_factory=list)
    substitutions: list[str] = field(default_factory=list)

    def by_verdict(self, verdict: Verdict) -> list[ResourceVerdict]:
        return [v for v in self.verdicts if v.verdict == verdict]


def _member_email(member: str) -> str | None:
    for prefix in _EMAIL_MEMBER_PREFIXES:
        if member.startswith(prefix):
            return member[len(prefix) :]
    return None


def _last_segment(value: object) -> str:
    return str(value).rstrip("/").rsplit("/", 1)[-1]


def _is_component(type_token: str) -> bool:
    package = type_token.split(":", 1)[0]
    return package not in {"gcp", "docker-build", "pulumi", "random", "docker"}


def _local_command(
    container: Mapping[str, Any], substitutions: list[str], problems: list[str]
) -> list[str]:
    commands = [str(c) for c in container.get("commands") or []]
    args = [str(a) for a in container.get("args") or []]
    if not commands:
        # Worker contract: the image's CMD is `python -m service`.
        commands = ["python", "-m", "service"]
        substitutions.append(
            "worker command: the plan sets no container command, so the image CMD "
            "`python -m service` runs"
        )
    argv = commands + args
    if argv[0] in {"python", "python3"} or argv[0].startswith("python3."):
        substitutions.append(
            f"worker command: `{argv[0]}` runs as this project's interpreter {sys.executable}"
        )
        argv[0] = sys.executable
    elif argv[0].startswith("/"):
        problems.append(
            f"the worker's container command {argv!r} names a path inside the image; "
            "locally the worker runs from source: use `python -m service` as the command"
        )
    return argv


@dataclass
class _Judging:
    """What judging the resources one by one collects along the way."""

    service_names: set[str]
    problems: list[str] = field(default_factory=list)
    substitutions: list[str] = field(default_factory=list)
    invoker_emails: list[str] = field(default_factory=list)
    public_invoke: bool = False


def _judge(res: Mapping[str, Any], ctx: _Judging) -> tuple[Verdict, str]:
    """The verdict on one resource, and why."""
    rtype = str(res.get("type", ""))
    name = str(res.get("name", ""))
    inputs: Mapping[str, Any] = res.get("inputs") or {}
    if rtype == QUEUE_TYPE:
        return "realised", "queue in the emulator, planned rate limits, retries and target"
    if rtype == SERVICE_TYPE:
        if inputs.get("ingress") not in (None, "INGRESS_TRAFFIC_ALL"):
            ctx.substitutions.append(
                f"ingress {inputs.get('ingress')}: locally the worker listens on 127.0.0.1 "
                "only, so only this machine reaches it"
            )
        return "realised", "worker process on 127.0.0.1 with the planned command and envs"
    if rtype == SERVICE_IAM_MEMBER_TYPE:
        return _judge_invoker_binding(name, inputs, ctx)
    if rtype == ACCOUNT_TYPE:
        email = (res.get("outputs") or {}).get("email") or inputs.get("accountId")
        return "realised", f"identity {email}: the emulator's issuer signs its ID tokens"
    if rtype in NO_LOCAL_EFFECT:
        return "no local effect", NO_LOCAL_EFFECT[rtype]
    if rtype.startswith("pulumi:providers:"):
        return "no local effect", "provider: credentials and project defaults"
    if _is_component(rtype) or rtype == "pulumi:pulumi:Stack":
        return "no local effect", "component: groups the resources listed with it"
    ctx.problems.append(
        f"{name} ({rtype}): the local stack has no realisation for this resource type; "
        "add one to devstack/realise.py (or list it in NO_LOCAL_EFFECT with the "
        "reason it needs none)"
    )
    return "refused", "no local realisation for this type"


def _judge_invoker_binding(
    name: str, inputs: Mapping[str, Any], ctx: _Judging
) -> tuple[Verdict, str]:
    role = str(inputs.get("role", ""))
    member = str(inputs.get("member", ""))
    bound_to = _last_segment(inputs.get("name", ""))
    if ctx.service_names and bound_to not in ctx.service_names:
        return "no local effect", f"{role} on service {bound_to!r}, not the worker"
    if role != RUN_INVOKER_ROLE:
        return "no local effect", f"{role} for {member}: only run.invoker is checked"
    if member in _PUBLIC_MEMBERS:
        ctx.public_invoke = True
        return "realised", f"{member} may invoke: the worker's token check is off"
    email = _member_email(member)
    if email is not None:
        ctx.invoker_emails.append(email)
        return "realised", f"{email} may invoke the worker (its token check allows it)"
    ctx.problems.append(
        f"{name}: run.invoker member {member!r} cannot be checked against a local "
        "ID token; bind a `serviceAccount:EMAIL` member (the invoker identity)"
    )
    return "refused", f"member {member!r} cannot be checked locally"


def analyse(plan: Mapping[str, Any]) -> LocalRealisation:
    """Give every resource of plan a verdict and extract what `up` starts.

    Raises PlanNotRealisable listing every problem at once.
    """
    problems: list[str] = []
    substitutions: list[str] = []
    verdicts: list[ResourceVerdict] = []
    resources: list[Mapping[str, Any]] = list(plan.get("resources") or [])
    outputs = {str(k): str(v) for k, v in (plan.get("outputs") or {}).items() if v is not None}
    stack = str(plan.get("stack") or "")

    for key in (OUTPUT_PROJECT, OUTPUT_LOCATION, OUTPUT_QUEUE, OUTPUT_AUDIENCE):
        if not outputs.get(key):
            problems.append(
                f"the plan exports no `{key}` output: __main__.py must export it "
                "(names in contract.names)"
            )
    if not outputs.get(OUTPUT_INVOKER_EMAIL):
        problems.append(
            f"the plan exports no `{OUTPUT_INVOKER_EMAIL}` output: without it no task carries "
            "an OIDC token; export the invoker service account's email"
        )

    queues = [r for r in resources if r.get("type") == QUEUE_TYPE]
    services = [r for r in resources if r.get("type") == SERVICE_TYPE]
    if len(queues) != 1:
        problems.append(
            f"the plan has {len(queues)} Cloud Tasks queues; the local stack realises exactly "
            "one (the one the `queue` output names)"
        )
    if len(services) != 1:
        problems.append(
            f"the plan has {len(services)} Cloud Run services; the local stack realises "
            "exactly one worker"
        )

    service = services[0] if len(services) == 1 else None
    service_names: set[str] = set()
    if service is not None:
        for value in (
            (service.get("inputs") or {}).get("name"),
            (service.get("outputs") or {}).get("name"),
            (service.get("outputs") or {}).get("id"),
            service.get("name"),
        ):
            if value:
                service_names.add(_last_segment(value))

    judging = _Judging(service_names=service_names)
    for res in resources:
        verdict, detail = _judge(res, judging)
        verdicts.append(
            ResourceVerdict(
                urn=str(res.get("urn", "")),
                type=str(res.get("type", "")),
                name=str(res.get("name", "")),
                verdict=verdict,
                detail=detail,
            )
        )
    problems.extend(judging.problems)
    substitutions.extend(judging.substitutions)
    invoker_emails = judging.invoker_emails
    public_invoke = judging.public_invoke

    queue_spec: QueueSpec | None = None
    if len(queues) == 1:
        q = queues[0]
        qid = str((q.get("outputs") or {}).get("id") or "")
        if "/queues/" not in qid:
            problems.append(
                f"queue {q.get('name')!r} has no computed id like projects/P/locations/L/queues/Q "
                f"(got {qid!r}); the plan's mocks must compute it"
            )
        elif outputs.get(OUTPUT_QUEUE) and outputs[OUTPUT_QUEUE] != qid:
            problems.append(
                f"the `queue` output {outputs[OUTPUT_QUEUE]!r} is not the planned queue {qid!r}: "
                "export the queue resource's id"
            )
        else:
            queue_spec = QueueSpec(path=qid, inputs=q.get("inputs") or {})
            state = queue_spec.desired_state
            if state not in ("RUNNING", "PAUSED"):
                problems.append(f"queue desiredState {state!r} is not RUNNING or PAUSED")
            _check_target(queue_spec.inputs.get("httpTarget"), problems, substitutions)

    worker_spec: WorkerSpec | None = None
    if service is not None:
        inputs = service.get("inputs") or {}
        template = inputs.get("template") or {}
        containers = template.get("containers") or []
        if len(containers) != 1:
            problems.append(
                f"the Cloud Run service has {len(containers)} containers; the local stack runs "
                "exactly one (sidecars are not realised)"
            )
        else:
            container = containers[0]
            env: dict[str, str] = {}
            for item in container.get("envs") or []:
                env_name = str(item.get("name", ""))
                if item.get("valueSource"):
                    problems.append(
                        f"worker env {env_name} comes from Secret Manager (valueSource), which "
                        "has no local counterpart; give it a plain value for this stack"
                    )
                elif env_name == WORKER_ENV_PORT:
                    problems.append("worker env PORT is reserved by Cloud Run; remove it")
                else:
                    env[env_name] = str(item.get("value", ""))
            command = _local_command(container, substitutions, problems)
            iam: tuple[str, ...] | None = tuple(invoker_emails)
            if inputs.get("invokerIamDisabled") or public_invoke:
                iam = None
                substitutions.append(
                    "invoker IAM is open (invokerIamDisabled or a public member): the worker "
                    "accepts requests without a token, as Cloud Run would"
                )
            probe = ((container.get("startupProbe") or {}).get("httpGet") or {}).get("path")
            limits = [
                f"{key} {template[key]}"
                for key in ("timeout", "maxInstanceRequestConcurrency", "scaling")
                if template.get(key)
            ]
            if container.get("resources"):
                limits.append("cpu/memory limits")
            if limits:
                substitutions.append(
                    "Cloud Run limits are not enforced locally: " + ", ".join(limits)
                )
            worker_spec = WorkerSpec(
                health_path=str(probe or HEALTH_ROUTE),
                service_name=_last_segment(
                    inputs.get("name") or (service.get("outputs") or {}).get("name") or "worker"
                ),
                command=command,
                env=env,
                iam_invokers=iam,
                project=outputs.get(OUTPUT_PROJECT, ""),
            )

    if problems or queue_spec is None or worker_spec is None:
        raise PlanNotRealisable(problems or ["the plan has no queue or no worker"])
    return LocalRealisation(
        stack=stack,
        queue=queue_spec,
        worker=worker_spec,
        outputs=outputs,
        verdicts=verdicts,
        substitutions=substitutions,
    )


def _check_target(target: object, problems: list[str], substitutions: list[str]) -> None:
    if not target or not isinstance(target, Mapping):
        return
    if target.get("oauthToken"):
        problems.append(
            "the queue's httpTarget uses an OAuth access token: Cloud Run rejects those "
            "(401); use oidcToken with the service URL as audience"
        )
    method = target.get("httpMethod")
    if method and method not in tasks_v2.HttpMethod.__members__:
        problems.append(f"httpTarget.httpMethod {method!r} is not a Cloud Tasks HTTP method")
    uri = target.get("uriOverride")
    if isinstance(uri, Mapping):
        mode = uri.get("uriOverrideEnforceMode")
        if mode and mode not in tasks_v2.UriOverride.UriOverrideEnforceMode.__members__:
            problems.append(f"uriOverrideEnforceMode {mode!r} is not ALWAYS or IF_NOT_EXISTS")
        substitutions.append(
            f"queue uriOverride: scheme/host/port {uri.get('scheme')}://{uri.get('host')}"
            f"{':' + str(uri['port']) if uri.get('port') else ''} become http://127.0.0.1:<worker "
            "port> (path, query and enforce mode as planned)"
        )
