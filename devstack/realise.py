"""Decide what each resource of a plan becomes on this machine.

Input: a `plan.model.Plan` (evaluated, or read from `python -m plan --format
json`). Output: a `LocalRealisation` naming every queue to create in the
emulator by its queue key, each with its own planned settings
(`devstack.local_queue`), the worker process to start
(`devstack.local_worker`), the accounts allowed to invoke it, and a verdict
for every resource: realised, no local effect (with the reason), or refused.
A plan with any refused resource is not realised at all: the error lists each
refusal and how to fix it, so nothing in the program is ever silently ignored.

Deliberately not here: starting processes or calling APIs (`devstack.runtime`
does that with this module's result), and evaluating the Pulumi program
(`plan.engine`). The module is pure so that the verdicts are unit-tested
against the real plans.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from contract.names import (
    OUTPUT_AUDIENCE,
    OUTPUT_INVOKER_EMAIL,
    OUTPUT_LOCATION,
    OUTPUT_PROJECT,
    OUTPUT_QUEUE,
    OUTPUT_QUEUES,
)
from contract.resources import (
    ALERT_POLICY_TYPE,
    ARTIFACT_REPOSITORY_TYPE,
    BUCKET_IAM_MEMBER_TYPE,
    BUCKET_TYPE,
    DASHBOARD_TYPE,
    IMAGE_TYPE,
    LOG_METRIC_TYPE,
    NOTIFICATION_CHANNEL_TYPE,
    PROJECT_IAM_CUSTOM_ROLE_TYPE,
    PROJECT_IAM_MEMBER_TYPE,
    PROJECT_SERVICE_TYPE,
    PUBLIC_PRINCIPALS,
    QUEUE_IAM_MEMBER_TYPE,
    QUEUE_TYPE,
    RUN_INVOKER_ROLE,
    RUN_SERVICE_IAM_MEMBER_TYPE,
    RUN_SERVICE_TYPE,
    SECRET_IAM_MEMBER_TYPE,
    SERVICE_ACCOUNT_IAM_MEMBER_TYPE,
    SERVICE_ACCOUNT_MEMBER_PREFIX,
    SERVICE_ACCOUNT_TYPE,
    SERVICE_IDENTITY_TYPE,
)
from contract.routing import DEFAULT_QUEUE_KEY
from devstack.local_queue import QueueSpec, queue_problems
from devstack.local_worker import NOBODY_INVOKER, WorkerSpec, worker_spec
from plan.model import Plan, PlannedResource
from plan.views import Exports, IamGrant, PlannedService, ServiceAccount, last_segment

__all__ = [
    "NOBODY_INVOKER",
    "NO_LOCAL_EFFECT",
    "LocalRealisation",
    "PlanNotRealisable",
    "QueueSpec",
    "ResourceVerdict",
    "WorkerSpec",
    "analyse",
]

Verdict = Literal["realised", "no local effect", "refused"]

# Resources whose whole job is done by Google Cloud and has nothing to act on
# here, with the reason shown by `up` and `status`.
NO_LOCAL_EFFECT: dict[str, str] = {
    PROJECT_SERVICE_TYPE: "API enablement: the emulator serves every API locally",
    SERVICE_IDENTITY_TYPE: "the Cloud Tasks service agent: the emulator dispatches as itself",
    ARTIFACT_REPOSITORY_TYPE: (
        "image registry: the worker runs from source with the container's command"
    ),
    IMAGE_TYPE: (
        "image build: the worker runs from source (same `python -m service` as the image CMD)"
    ),
    PROJECT_IAM_MEMBER_TYPE: (
        "project role (logging/metrics writer): local logs go to .devstack/<stack>/*.log"
    ),
    SERVICE_ACCOUNT_IAM_MEMBER_TYPE: (
        "actAs on a service account: the emulator mints tokens without checking it"
    ),
    QUEUE_IAM_MEMBER_TYPE: "queue role (enqueuer/viewer): the emulator's API is unauthenticated",
    SECRET_IAM_MEMBER_TYPE: (
        "secret access for the runtime account: locally the value comes from the shell "
        "that runs `up`"
    ),
    PROJECT_IAM_CUSTOM_ROLE_TYPE: "custom role: IAM is not enforced locally",
    ALERT_POLICY_TYPE: (
        "alert policy: Cloud Monitoring watches the cloud stack; `devstack watch` shows "
        "its threshold beside the local values"
    ),
    NOTIFICATION_CHANNEL_TYPE: "notification channel: nothing is alerted locally",
    DASHBOARD_TYPE: "dashboard: Cloud Monitoring charts the cloud stack only",
    LOG_METRIC_TYPE: "log-based metric: local logs go to .devstack/<stack>/*.log",
    BUCKET_IAM_MEMBER_TYPE: "bucket role: the Cloud Storage emulator checks no credentials",
}

# Member prefixes whose identity a locally verified ID token can carry.
_EMAIL_MEMBER_PREFIXES = (SERVICE_ACCOUNT_MEMBER_PREFIX, "user:")
# Provider packages: any other package's type token is one of the program's components.
_PROVIDER_PACKAGES = {"gcp", "docker-build", "pulumi", "random", "docker"}


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
class LocalRealisation:
    stack: str
    queues: dict[str, QueueSpec]
    """Every planned queue by its key (the `queues` output), `default` first."""
    worker: WorkerSpec
    outputs: dict[str, Any]
    """The plan's stack outputs (service_url replaced at `up`); the maps stay maps."""
    verdicts: list[ResourceVerdict] = field(default_factory=list)
    substitutions: list[str] = field(default_factory=list)
    warnings: tuple[str, ...] = ()
    """The program's warnings (the capacity check across queues), shown by `up`."""

    @property
    def queue(self) -> QueueSpec:
        """The `default` queue (the `queue` output)."""
        return self.queues[DEFAULT_QUEUE_KEY]

    def by_verdict(self, verdict: Verdict) -> list[ResourceVerdict]:
        return [v for v in self.verdicts if v.verdict == verdict]


def _member_email(member: str) -> str | None:
    for prefix in _EMAIL_MEMBER_PREFIXES:
        if member.startswith(prefix):
            return member[len(prefix) :]
    return None


def _is_component(type_token: str) -> bool:
    return type_token.split(":", 1)[0] not in _PROVIDER_PACKAGES


@dataclass
class _Judging:
    """What judging the resources one by one collects along the way."""

    service_names: set[str]
    problems: list[str] = field(default_factory=list)
    substitutions: list[str] = field(default_factory=list)
    invoker_emails: list[str] = field(default_factory=list)
    public_invoke: bool = False


def _judge(resource: PlannedResource, ctx: _Judging) -> tuple[Verdict, str]:
    """The verdict on one resource, and why."""
    rtype = resource.type
    if rtype == QUEUE_TYPE:
        return "realised", "queue in the emulator, its planned rate limits, retries and target"
    if rtype == RUN_SERVICE_TYPE:
        ingress = PlannedService.of(resource).ingress
        if ingress not in (None, "INGRESS_TRAFFIC_ALL"):
            ctx.substitutions.append(
                f"ingress {ingress}: locally the worker listens on 127.0.0.1 "
                "only, so only this machine reaches it"
            )
        return "realised", "worker process on 127.0.0.1 with the planned command and envs"
    if rtype == RUN_SERVICE_IAM_MEMBER_TYPE:
        return _judge_invoker_grant(IamGrant.of(resource), ctx)
    if rtype == BUCKET_TYPE:
        return "realised", "bucket in the local Cloud Storage emulator (devstack.local_storage)"
    if rtype == SERVICE_ACCOUNT_TYPE:
        account = ServiceAccount.of(resource)
        email = account.email or account.account_id
        return "realised", f"identity {email}: the emulator's issuer signs its ID tokens"
    if rtype in NO_LOCAL_EFFECT:
        return "no local effect", NO_LOCAL_EFFECT[rtype]
    if rtype.startswith("pulumi:providers:"):
        return "no local effect", "provider: credentials and project defaults"
    if _is_component(rtype) or rtype == "pulumi:pulumi:Stack":
        return "no local effect", "component: groups the resources listed with it"
    ctx.problems.append(
        f"{resource.name} ({rtype}): the local stack has no realisation for this resource "
        "type; add one to devstack/realise.py (or list it in NO_LOCAL_EFFECT with the "
        "reason it needs none)"
    )
    return "refused", "no local realisation for this type"


def _judge_invoker_grant(grant: IamGrant, ctx: _Judging) -> tuple[Verdict, str]:
    role, member = grant.role, grant.member
    bound_to = last_segment(grant.target)
    if ctx.service_names and bound_to not in ctx.service_names:
        return "no local effect", f"{role} on service {bound_to!r}, not the worker"
    if role != RUN_INVOKER_ROLE:
        return "no local effect", f"{role} for {member}: only run.invoker is checked"
    if member in PUBLIC_PRINCIPALS:
        ctx.public_invoke = True
        return "realised", f"{member} may invoke: the worker's token check is off"
    email = _member_email(member)
    if email is not None:
        ctx.invoker_emails.append(email)
        return "realised", f"{email} may invoke the worker (its token check allows it)"
    ctx.problems.append(
        f"{grant.resource.name}: run.invoker member {member!r} cannot be checked against a "
        "local ID token; bind a `serviceAccount:EMAIL` member (the invoker identity)"
    )
    return "refused", f"member {member!r} cannot be checked locally"


def _export_problems(exports: Exports) -> list[str]:
    problems = [
        f"the plan exports no `{key}` output: __main__.py must export it (names in contract.names)"
        for key, value in (
            (OUTPUT_PROJECT, exports.project),
            (OUTPUT_LOCATION, exports.location),
            (OUTPUT_QUEUE, exports.queue),
            (OUTPUT_AUDIENCE, exports.audience),
        )
        if not value
    ]
    if not exports.invoker_email:
        problems.append(
            f"the plan exports no `{OUTPUT_INVOKER_EMAIL}` output: without it no task carries "
            "an OIDC token; export the invoker service account's email"
        )
    return problems


def _queue_specs(plan: Plan, judging: _Judging) -> dict[str, QueueSpec] | None:
    """Every planned queue by its key; None (with the problems noted) when the plan's
    queues and its `queue`/`queues` outputs do not match one to one."""
    exports = plan.exports
    planned = plan.queues()
    if not planned:
        judging.problems.append("the plan has no Cloud Tasks queue")
        return None
    keys = exports.queue_keys_by_path()
    problems: list[str] = []
    for queue in planned:
        if "/queues/" not in queue.path:
            problems.append(
                f"queue {queue.resource.name!r} has no computed id like "
                f"projects/P/locations/L/queues/Q (got {queue.path!r}); the plan's mocks must "
                "compute it"
            )
        elif queue.path not in keys:
            problems.append(
                f"queue {queue.resource.name!r} ({queue.path}) has no key in the "
                f"`{OUTPUT_QUEUES}` output: export every queue's id under its queue key"
            )
    by_path = {q.path: q for q in planned}
    for key, path in exports.queues.items():
        if path not in by_path:
            problems.append(
                f"the `{OUTPUT_QUEUES}` output maps {key!r} to {path!r}, which is not a planned "
                "queue: export the queue resources' ids"
            )
    default = exports.queues.get(DEFAULT_QUEUE_KEY)
    if exports.queue and default and exports.queue != default:
        problems.append(
            f"the `{OUTPUT_QUEUE}` output {exports.queue!r} is not the planned queue "
            f"{default!r} of key {DEFAULT_QUEUE_KEY!r}: export the default queue's id"
        )
    if default is None:
        problems.append(f"the `{OUTPUT_QUEUES}` output has no {DEFAULT_QUEUE_KEY!r} queue")
    judging.problems.extend(problems)
    if problems:
        return None
    for queue in planned:
        judging.problems.extend(queue_problems(queue, judging.substitutions))
    return {key: QueueSpec(by_path[path]) for key, path in exports.queues.items()}


def analyse(plan: Plan, environ: Mapping[str, str] | None = None) -> LocalRealisation:
    """Give every resource of plan a verdict and extract what `up` starts.

    `environ`: the environment the worker's Secret Manager values come from locally
    (the shell that runs `up`); none when not given.

    Raises PlanNotRealisable listing every problem at once.
    """
    exports = plan.exports
    # Scalars as strings, the map outputs (queues, routes, dispatch_deadlines) as maps.
    outputs = {
        str(k): v if isinstance(v, dict) else str(v)
        for k, v in plan.outputs.items()
        if v is not None
    }
    services = plan.services()
    problems = _export_problems(exports)
    if len(services) != 1:
        problems.append(
            f"the plan has {len(services)} Cloud Run services; the local stack realises "
            "exactly one worker"
        )
    service = services[0] if len(services) == 1 else None
    judging = _Judging(service_names=service.identifiers if service else set())
    verdicts = []
    for resource in plan.resources:
        verdict, detail = _judge(resource, judging)
        verdicts.append(
            ResourceVerdict(resource.urn, resource.type, resource.name, verdict, detail)
        )
    # Problems in the order the user reads them: exports, counts, resources, queue, worker.
    judging.problems[:0] = problems
    queues = _queue_specs(plan, judging)
    worker = None
    if service is not None:
        worker = worker_spec(
            service,
            invoker_emails=judging.invoker_emails,
            public_invoke=judging.public_invoke,
            project=exports.project or "",
            substitutions=judging.substitutions,
            problems=judging.problems,
            environ=environ or {},
        )
    if judging.problems or queues is None or worker is None:
        raise PlanNotRealisable(judging.problems or ["the plan has no queue or no worker"])
    return LocalRealisation(
        stack=plan.stack,
        queues=queues,
        worker=worker,
        outputs=outputs,
        verdicts=verdicts,
        substitutions=judging.substitutions,
        warnings=plan.warnings,
    )
