"""The policy rules as pure functions over resource properties.

Each rule takes what CrossGuard hands a policy (a resource's type and its
properties with the engine's camelCase names, or the list of all resources of
the stack) plus the stack name and, for stack rules, what the stack config says
about its queues (`StackContext`: the longest dispatch deadline, the queue keys,
the routes), and returns the violations it finds as messages that say what is
wrong and how to fix it. Resource rules judge every queue resource of the stack,
whatever its key.
The same functions run in three places:

- `policy/__main__.py` wraps them in `pulumi_policy` policies for
  `pulumi preview/up --policy-pack policy` (policy/.venv, protobuf 5);
- tests run them from the main .venv against the offline plan of every stack
  (`python -m plan`, `tests/snapshots/plan-<stack>.json`) and mutated copies;
- `python -m policy check --plan FILE` runs them over a saved plan.

This module deliberately imports neither `pulumi` nor `pulumi_policy` (the
two venvs pin different protobuf majors) and nothing outside the standard
library but `contract`, so it loads in both environments. It does not decide
enforcement levels: the pack makes every rule mandatory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from contract.durations import DurationError, parse_duration_s as _parse_duration_s
from contract.limits import (
    CLOUD_RUN_DEFAULT_REQUEST_TIMEOUT_S,
    DEFAULT_DISPATCH_DEADLINE_S,
    MAX_CONCURRENT_DISPATCHES,
    MAX_DISPATCHES_PER_SECOND,
)
from contract.names import OUTPUT_DISPATCH_DEADLINES, OUTPUT_QUEUES, OUTPUT_ROUTES
from contract.resources import (
    FOLDER_IAM_BINDING_TYPE,
    FOLDER_IAM_POLICY_TYPE,
    LEGACY_RUN_IAM_BINDING_TYPE,
    LEGACY_RUN_IAM_MEMBER_TYPE,
    LEGACY_RUN_IAM_POLICY_TYPE,
    LEGACY_RUN_SERVICE_TYPE,
    ORGANIZATION_IAM_BINDING_TYPE,
    ORGANIZATION_IAM_POLICY_TYPE,
    PROJECT_IAM_BINDING_TYPE,
    PROJECT_IAM_POLICY_TYPE,
    PUBLIC_PRINCIPALS,
    QUEUE_TYPE,
    RUN_ADMIN_ROLE,
    RUN_DEVELOPER_ROLE,
    RUN_INVOKER_ROLE,
    RUN_SERVICE_IAM_BINDING_TYPE,
    RUN_SERVICE_IAM_MEMBER_TYPE,
    RUN_SERVICE_IAM_POLICY_TYPE,
    RUN_SERVICE_TYPE,
    RUN_SERVICES_INVOKER_ROLE,
    SERVICE_ACCOUNT_MEMBER_PREFIX,
    config_key,
)
from contract.routing import DEFAULT_QUEUE_KEY

# --- names from contract.resources, under the short names the rules read ---------------
QUEUE = QUEUE_TYPE
RUN_SERVICE = RUN_SERVICE_TYPE
RUN_SERVICE_IAM_MEMBER = RUN_SERVICE_IAM_MEMBER_TYPE
LEGACY_RUN_SERVICE = LEGACY_RUN_SERVICE_TYPE
# The legacy (v1) Cloud Run IAM resources grant the same role on the same service.
RUN_IAM_MEMBER_TYPES = (RUN_SERVICE_IAM_MEMBER_TYPE, LEGACY_RUN_IAM_MEMBER_TYPE)
RUN_IAM_BINDING_TYPES = (RUN_SERVICE_IAM_BINDING_TYPE, LEGACY_RUN_IAM_BINDING_TYPE)
RUN_IAM_POLICY_TYPES = (RUN_SERVICE_IAM_POLICY_TYPE, LEGACY_RUN_IAM_POLICY_TYPE)
RUN_IAM_TYPES = RUN_IAM_MEMBER_TYPES + RUN_IAM_BINDING_TYPES + RUN_IAM_POLICY_TYPES

# Authoritative IAM replaces every grant not declared here. At project (folder,
# organisation) level that includes the service agents' own: one `pulumi up` can lock
# the whole project out. On a resource it silently removes grants made elsewhere (a
# team's own enqueuer on the queue, an operator's access). Every pulumi-gcp resource
# of that kind is named *IamBinding / *IamPolicy (IAMBinding, IAMPolicy, ...).
AUTHORITATIVE_PARENT_IAM = (
    PROJECT_IAM_BINDING_TYPE,
    PROJECT_IAM_POLICY_TYPE,
    FOLDER_IAM_BINDING_TYPE,
    FOLDER_IAM_POLICY_TYPE,
    ORGANIZATION_IAM_BINDING_TYPE,
    ORGANIZATION_IAM_POLICY_TYPE,
)
_AUTHORITATIVE_IAM_RE = re.compile(r":\w*I[aA][mM](Binding|Policy)$")

PUBLIC_MEMBERS = PUBLIC_PRINCIPALS
SERVICE_ACCOUNT_PREFIX = SERVICE_ACCOUNT_MEMBER_PREFIX

PROTECTED_STACKS = ("prod",)
"""Stacks whose resources must keep deletion protection on."""

DISPATCH_DEADLINE_CONFIG_KEY = config_key("dispatch_deadline")
"""The main program's config key (components/config.py) that the pack reads."""
QUEUES_CONFIG_KEY = config_key("queues")
"""The other queues by key, each with its own `dispatch_deadline` (components/config.py)."""
ROUTES_CONFIG_KEY = config_key("routes")
"""Task type -> queue key (components/config.py)."""


class PolicyInputError(ValueError):
    """A value the rules need cannot be read (for example a malformed duration)."""


@dataclass(frozen=True)
class StackResource:
    """One resource as a stack-level rule sees it."""

    type: str
    urn: str
    name: str
    props: Mapping[str, Any]


@dataclass(frozen=True)
class Violation:
    """A rule's finding: which rule, about which resource, and what to do."""

    rule: str
    message: str
    urn: str | None = None


@dataclass(frozen=True)
class StackContext:
    """What the stack rules read from the stack config besides the resources."""

    dispatch_deadline_s: int
    """The longest dispatch deadline of the stack's queues, in seconds."""
    queue_keys: tuple[str, ...] = (DEFAULT_QUEUE_KEY,)
    routes: Mapping[str, str] = field(default_factory=dict)
    """Task type -> queue key."""
    queue_paths: Mapping[str, str] = field(default_factory=dict)
    """Queue key -> queue path, when known (an offline plan knows; a preview does not)."""


ResourceCheck = Callable[[str, Mapping[str, Any], str], list[str]]
StackCheck = Callable[[Sequence[StackResource], str, StackContext], list[tuple[str, str | None]]]


@dataclass(frozen=True)
class ResourceRule:
    name: str
    description: str
    check: ResourceCheck


@dataclass(frozen=True)
class StackRule:
    name: str
    description: str
    check: StackCheck


# --- helpers -----------------------------------------------------------------------------


def parse_duration_s(value: object, what: str) -> float:
    """Seconds in a provider duration ("600s", "3.5s"), a config duration ("10m"), or a
    number: `contract.durations`, with its error raised as the pack's input error."""
    try:
        return _parse_duration_s(value, what=what)
    except DurationError as exc:
        raise PolicyInputError(str(exc)) from None


def _get(props: Mapping[str, Any], *path: str) -> Any:
    """props[a][b]... or None where any level is missing."""
    value: Any = props
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _is_invoker_grant(role: Any) -> bool:
    # roles/run.invoker is the grant; a custom role cannot be judged here, so only the
    # named role (and the owner-style roles that include it) are looked at.
    return role in (
        RUN_INVOKER_ROLE,
        RUN_SERVICES_INVOKER_ROLE,
        RUN_ADMIN_ROLE,
        RUN_DEVELOPER_ROLE,
    )


def _grants(resource_type: str, props: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(role, member) pairs that a Cloud Run IAM resource grants."""
    if resource_type in RUN_IAM_MEMBER_TYPES:
        return [(str(props.get("role")), str(props.get("member")))]
    if resource_type in RUN_IAM_BINDING_TYPES:
        return [(str(props.get("role")), str(m)) for m in props.get("members") or []]
    if resource_type in RUN_IAM_POLICY_TYPES:
        raw = props.get("policyData")
        try:
            policy = json.loads(raw) if isinstance(raw, str) else (raw or {})
        except json.JSONDecodeError:
            return []
        return [
            (str(binding.get("role")), str(member))
            for binding in policy.get("bindings", [])
            for member in binding.get("members", [])
        ]
    return []


# --- resource rules ----------------------------------------------------------------------


def no_public_invoker(resource_type: str, props: Mapping[str, Any], stack: str) -> list[str]:
    """No allUsers/allAuthenticatedUsers grant on a Cloud Run service."""
    return [
        f"{role} is granted to {member} on Cloud Run service {props.get('name')!r}: anyone on "
        "the internet could call the worker and forge tasks. Grant roles/run.invoker only to "
        "the invoker service account (serviceAccount:...) with a ServiceIamMember."
        for role, member in _grants(resource_type, props)
        if member in PUBLIC_MEMBERS
    ]


def invoker_iam_enabled(resource_type: str, props: Mapping[str, Any], stack: str) -> list[str]:
    """Cloud Run's IAM invoker check stays on (invokerIamDisabled is not true)."""
    if resource_type != RUN_SERVICE or props.get("invokerIamDisabled") is not True:
        return []
    return [
        f"Cloud Run service {props.get('name')!r} sets invokerIamDisabled = true: Cloud Run "
        "would serve every request without checking roles/run.invoker, so the worker is public. "
        "Remove invoker_iam_disabled (or set it to False)."
    ]


def invoker_only_service_accounts(
    resource_type: str, props: Mapping[str, Any], stack: str
) -> list[str]:
    """roles/run.invoker (and roles that contain it) go to service accounts only."""
    return [
        f"{role} is granted to {member!r} on Cloud Run service {props.get('name')!r}; only "
        "service accounts may invoke the worker (tasks carry the invoker account's OIDC token). "
        "Grant it to a member of the form serviceAccount:NAME@PROJECT.iam.gserviceaccount.com."
        for role, member in _grants(resource_type, props)
        if _is_invoker_grant(role)
        and member not in PUBLIC_MEMBERS  # reported by no_public_invoker
        and not member.startswith(SERVICE_ACCOUNT_PREFIX)
    ]


def queue_bounded_retries(resource_type: str, props: Mapping[str, Any], stack: str) -> list[str]:
    """Every queue gives up on a task eventually.

    Cloud Tasks abandons a task only when BOTH limits are reached (queue.proto:
    "once max_retry_duration has passed and the task has been attempted
    max_attempts times"). So maxAttempts = -1 retries forever whatever the
    duration says; an unset maxAttempts means the API default (100) and is
    bounded; a bounded maxRetryDuration alone does not help when attempts are
    unlimited.
    """
    if resource_type != QUEUE:
        return []
    queue = props.get("name") or "(auto-named)"
    retry = props.get("retryConfig")
    if not isinstance(retry, Mapping):
        return [
            f"queue {queue!r} has no retryConfig: its limits are whatever the API defaults to. "
            "Set retry_config with max_attempts (>= 1) so failing tasks are eventually dropped."
        ]
    attempts = retry.get("maxAttempts")
    duration = retry.get("maxRetryDuration")
    if attempts is not None and int(attempts) == -1:
        hint = (
            f" (maxRetryDuration {duration} does not bound it: Cloud Tasks stops only when both "
            "limits are reached)"
            if duration not in (None, "", "0s", 0)
            else ""
        )
        return [
            f"queue {queue!r} retries failing tasks forever: retryConfig.maxAttempts = -1{hint}. "
            "Set max_attempts to a positive number (stack config max_attempts)."
        ]
    if attempts is not None and int(attempts) < 1:
        return [
            f"queue {queue!r} has retryConfig.maxAttempts = {attempts}; "
            "use a positive number of attempts (or leave it unset for the API default of 100)."
        ]
    return []


def queue_dispatch_rate(resource_type: str, props: Mapping[str, Any], stack: str) -> list[str]:
    """Dispatch rate explicit and within Cloud Tasks limits (0, 500] per second."""
    if resource_type != QUEUE:
        return []
    queue = props.get("name") or "(auto-named)"
    rate = _get(props, "rateLimits", "maxDispatchesPerSecond")
    problems: list[str] = []
    if rate is None:
        problems.append(
            f"queue {queue!r} sets no rateLimits.maxDispatchesPerSecond: it would push tasks at "
            f"the API maximum ({MAX_DISPATCHES_PER_SECOND:g}/s) into the worker. "
            "Set rate_limits.max_dispatches_per_second (stack config max_dispatches_per_second)."
        )
    elif not 0 < float(rate) <= MAX_DISPATCHES_PER_SECOND:
        problems.append(
            f"queue {queue!r} has rateLimits.maxDispatchesPerSecond = {rate}; Cloud Tasks accepts "
            f"a rate in (0, {MAX_DISPATCHES_PER_SECOND:g}] per queue. "
            "Choose a value in that range (shard across queues for more)."
        )
    concurrent = _get(props, "rateLimits", "maxConcurrentDispatches")
    if concurrent is not None and not 1 <= int(concurrent) <= MAX_CONCURRENT_DISPATCHES:
        problems.append(
            f"queue {queue!r} has rateLimits.maxConcurrentDispatches = {concurrent}; Cloud Tasks "
            f"accepts 1..{MAX_CONCURRENT_DISPATCHES}."
        )
    return problems


def no_authoritative_iam(resource_type: str, props: Mapping[str, Any], stack: str) -> list[str]:
    """Only non-authoritative *IamMember grants, at project level and on resources."""
    if not _AUTHORITATIVE_IAM_RE.search(resource_type):
        return []
    what = f"role {props['role']}" if props.get("role") else "the whole IAM policy"
    member_type = re.sub(r"(Binding|Policy)$", "Member", resource_type.rsplit(":", 1)[1])
    if resource_type in AUTHORITATIVE_PARENT_IAM:
        scope = resource_type.split(":")[1].split("/")[0]
        return [
            f"{resource_type} is authoritative for {what} on {scope} "
            f"{props.get('project') or props.get('folder') or props.get('orgId')!r}: it removes "
            "every grant not declared in this stack, including Google's service agents. "
            f"Use the non-authoritative {member_type} (one member, one role) instead."
        ]
    return [
        f"{resource_type} is authoritative for {what} on its resource: it removes every "
        "grant of that resource made outside this stack (another team's enqueuer, an "
        f"operator's access). Use the non-authoritative {member_type} (one member, one "
        "role) instead."
    ]


def prod_deletion_protection(resource_type: str, props: Mapping[str, Any], stack: str) -> list[str]:
    """In protected stacks nothing turns deletion protection off.

    Cloud Run v2 services default to deletionProtection = true (pulumi-gcp
    `cloudrunv2.Service` `deletion_protection`), so an
    unset value is protected; only an explicit false is a violation.
    """
    if stack not in PROTECTED_STACKS or props.get("deletionProtection") is not False:
        return []
    return [
        f"{resource_type} {props.get('name')!r} has deletionProtection = false in stack {stack!r}: "
        "a mistaken `pulumi destroy` or replacement would delete it. Set "
        f"`pulumi config set deletion_protection true --stack {stack}`."
    ]


# --- stack rules ---------------------------------------------------------------------------


def timeout_covers_dispatch_deadline(
    resources: Sequence[StackResource], stack: str, context: StackContext
) -> list[tuple[str, str | None]]:
    """Cloud Run's request timeout is at least every queue's dispatch deadline.

    Otherwise Cloud Run cuts an attempt with 504 while Cloud Tasks still waits,
    the task is retried although the handler may have done its work, and the
    retries multiply. The deadline comes from the stack config
    (`dispatch_deadline`, default 10 min as in Cloud Tasks), which is what the
    enqueue helper puts on every task. Applies only to stacks that dispatch
    tasks (a queue exists) to the Cloud Run services of the stack; with several
    queues, the longest deadline of them is the one to cover.
    """
    dispatch_deadline_s = context.dispatch_deadline_s
    if not any(r.type == QUEUE for r in resources):
        return []
    found: list[tuple[str, str | None]] = []
    for resource in resources:
        if resource.type != RUN_SERVICE:
            continue
        raw = _get(resource.props, "template", "timeout")
        timeout = (
            float(CLOUD_RUN_DEFAULT_REQUEST_TIMEOUT_S)
            if raw in (None, "")
            else parse_duration_s(raw, f"{resource.name}: template.timeout")
        )
        if timeout < dispatch_deadline_s:
            shown = f"{raw}" if raw not in (None, "") else "unset (Cloud Run default 300s)"
            found.append(
                (
                    f"Cloud Run service {resource.name!r} has request timeout {shown}, shorter "
                    f"than the queue's dispatch deadline {dispatch_deadline_s}s: Cloud Run would "
                    "cut attempts Cloud Tasks still waits for, and they would be retried. Raise "
                    "request_timeout (template.timeout) or lower dispatch_deadline in the stack "
                    "config.",
                    resource.urn,
                )
            )
    return found


def queue_reached_by_route(
    resources: Sequence[StackResource], stack: str, context: StackContext
) -> list[tuple[str, str | None]]:
    """Every queue but `default` is named by at least one route.

    A task type without a route goes to `default`; a queue no route names gets
    only tasks whose producer picked it by hand, which the worker refuses as
    misrouted (their type's route names another queue). Such a queue is a
    leftover or a missing route.
    """
    routed = set(context.routes.values())
    urns = {str(r.props.get("id")): r.urn for r in resources if r.type == QUEUE}
    return [
        (
            f"queue {key!r} is reached by no route: no task type goes to it, and a task put "
            "there by hand is refused by the worker as misrouted. Route a task type to it "
            f"(stack config routes: TYPE: {key}) or remove queues.{key}.",
            urns.get(context.queue_paths.get(key, "")),
        )
        for key in context.queue_keys
        if key != DEFAULT_QUEUE_KEY and key not in routed
    ]


RESOURCE_RULES: tuple[ResourceRule, ...] = (
    ResourceRule(
        "cloud-run-no-public-invoker",
        "Cloud Run services are never invocable by allUsers or allAuthenticatedUsers.",
        no_public_invoker,
    ),
    ResourceRule(
        "cloud-run-invoker-iam-enabled",
        "Cloud Run services keep the IAM invoker check (invokerIamDisabled is not true).",
        invoker_iam_enabled,
    ),
    ResourceRule(
        "cloud-run-invoker-service-accounts-only",
        "roles/run.invoker is granted only to serviceAccount: members.",
        invoker_only_service_accounts,
    ),
    ResourceRule(
        "queue-bounded-retries",
        "Every Cloud Tasks queue gives up on a failing task (maxAttempts is not -1).",
        queue_bounded_retries,
    ),
    ResourceRule(
        "queue-dispatch-rate-within-limits",
        "Every queue sets maxDispatchesPerSecond within (0, 500] and concurrency within 1..5000.",
        queue_dispatch_rate,
    ),
    ResourceRule(
        "no-authoritative-iam",
        "No authoritative IAM (any *IamBinding or *IamPolicy), at project level or on a resource.",
        no_authoritative_iam,
    ),
    ResourceRule(
        "prod-deletion-protection",
        "In the prod stack no resource turns deletionProtection off.",
        prod_deletion_protection,
    ),
)

STACK_RULES: tuple[StackRule, ...] = (
    StackRule(
        "cloud-run-timeout-covers-dispatch-deadline",
        "The Cloud Run request timeout is at least every queue's dispatch deadline.",
        timeout_covers_dispatch_deadline,
    ),
    StackRule(
        "queue-reached-by-route",
        "Every queue but `default` is named by at least one route.",
        queue_reached_by_route,
    ),
)

RULE_NAMES: tuple[str, ...] = tuple(r.name for r in RESOURCE_RULES) + tuple(
    r.name for r in STACK_RULES
)


def dispatch_deadline_from_config(value: object) -> int:
    """The configured dispatch deadline in seconds; Cloud Tasks' default when unset."""
    if value in (None, ""):
        return DEFAULT_DISPATCH_DEADLINE_S
    return int(parse_duration_s(value, DISPATCH_DEADLINE_CONFIG_KEY))


def _object(value: object, key: str) -> Mapping[str, Any]:
    """A map config value: a mapping (YAML) or its JSON text (as Pulumi hands it over)."""
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise PolicyInputError(f"{key}: expected a map, got {value!r:.80}") from None
    if not isinstance(value, Mapping):
        raise PolicyInputError(f"{key}: expected a map, got {value!r:.80}")
    return value


def context_from_config(
    dispatch_deadline: object, queues: object = None, routes: object = None
) -> StackContext:
    """The stack rules' context from the stack config's `dispatch_deadline` (queue
    `default`), `queues` (the others, each maybe with its own) and `routes`."""
    others = _object(queues, QUEUES_CONFIG_KEY)
    deadlines = [dispatch_deadline_from_config(dispatch_deadline)]
    for key, settings in others.items():
        own = _object(settings, f"{QUEUES_CONFIG_KEY}.{key}").get("dispatch_deadline")
        if key == DEFAULT_QUEUE_KEY and own in (None, ""):
            continue
        deadlines.append(dispatch_deadline_from_config(own))
    keys = (DEFAULT_QUEUE_KEY, *(str(k) for k in others if k != DEFAULT_QUEUE_KEY))
    route_map = {str(t): str(k) for t, k in _object(routes, ROUTES_CONFIG_KEY).items()}
    return StackContext(max(deadlines), keys, route_map)


def context_from_outputs(
    outputs: Mapping[str, Any], dispatch_deadline_s: int | None = None
) -> StackContext:
    """The stack rules' context from an offline plan's outputs (queues, routes and
    deadlines as the program read them from the config); `dispatch_deadline_s`
    overrides the deadline (the CLI's --dispatch-deadline)."""
    paths = {str(k): str(v) for k, v in _object(outputs.get(OUTPUT_QUEUES), OUTPUT_QUEUES).items()}
    deadlines = _object(outputs.get(OUTPUT_DISPATCH_DEADLINES), OUTPUT_DISPATCH_DEADLINES)
    if dispatch_deadline_s is None:
        dispatch_deadline_s = max(
            (dispatch_deadline_from_config(v) for v in deadlines.values()),
            default=DEFAULT_DISPATCH_DEADLINE_S,
        )
    routes = {str(t): str(k) for t, k in _object(outputs.get(OUTPUT_ROUTES), OUTPUT_ROUTES).items()}
    return StackContext(dispatch_deadline_s, tuple(paths) or (DEFAULT_QUEUE_KEY,), routes, paths)


def check_resources(
    resources: Iterable[StackResource], stack: str, context: StackContext | int
) -> list[Violation]:
    """Every rule over a list of resources, as `pulumi preview --policy-pack` would run them.
    `context` may be just the dispatch deadline in seconds (one queue, no routes)."""
    if isinstance(context, int):
        context = StackContext(context)
    listed = list(resources)
    found = [
        Violation(rule.name, message, resource.urn)
        for resource in listed
        for rule in RESOURCE_RULES
        for message in rule.check(resource.type, resource.props, stack)
    ]
    found += [
        Violation(rule.name, message, urn)
        for rule in STACK_RULES
        for message, urn in rule.check(listed, stack, context)
    ]
    return found


class PlannedResourceLike(Protocol):
    """What the rules read of one resource of `plan.model.Plan` (its `PlannedResource`)."""

    @property
    def type(self) -> str: ...
    @property
    def urn(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def state(self) -> dict[str, Any]: ...


class PlanLike(Protocol):
    """What the rules read of a `plan.model.Plan`. Structural, so that this module
    loads in the pack's own interpreter, which has neither `plan` nor `pulumi`."""

    @property
    def stack(self) -> str: ...
    @property
    def resources(self) -> Sequence[PlannedResourceLike]: ...
    @property
    def outputs(self) -> Mapping[str, Any]: ...


def plan_resources(plan: PlanLike) -> list[StackResource]:
    """Resources of an offline plan as the stack rules see them: the resource's state
    (mock outputs with the inputs laid over them), as stack policies receive it."""
    return [
        StackResource(type=r.type, urn=r.urn, name=r.name, props=r.state) for r in plan.resources
    ]


def check_plan(
    plan: PlanLike, stack: str | None = None, dispatch_deadline_s: int | None = None
) -> list[Violation]:
    """Every rule over an offline plan (`plan.model.Plan`); the stack defaults to the plan's,
    the queues, routes and deadlines to what the plan exports."""
    return check_resources(
        plan_resources(plan),
        stack if stack is not None else plan.stack,
        context_from_outputs(plan.outputs, dispatch_deadline_s),
    )
