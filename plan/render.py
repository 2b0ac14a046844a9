"""Renderings of a `Plan`: a preview-like text tree and a Mermaid diagram of the IAM wiring.

Everything here is a pure function of a plan, read through its typed views: no
evaluation, no files. The diagram is derived from the IAM member resources and
the service's runtime account as the plan records them, so it shows what the
program declares, not what it was meant to declare. The diff rendering is in
`plan.diff`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from contract.resources import (
    IAM_MEMBER_TYPES,
    IMAGE_TYPE,
    PROJECT_SERVICE_TYPE,
    QUEUE_TYPE,
    RUN_SERVICE_TYPE,
    SERVICE_ACCOUNT_TYPE,
    SERVICE_ACCOUNT_USER_ROLE,
)
from contract.routing import DEFAULT_QUEUE_KEY
from plan.model import Plan, PlannedResource
from plan.views import IamGrant, Image, PlannedQueue, PlannedService, ServiceAccount

# --- text ---------------------------------------------------------------------------


def _queue_summary(queue: PlannedQueue) -> str:
    rate, retry = queue.rate_limits, queue.retry_config
    target = "queue-level target" if queue.http_target else "task-level target"
    return (
        f"{rate.max_dispatches_per_second if rate else None}/s, "
        f"{rate.max_concurrent_dispatches if rate else None} concurrent, "
        f"{retry.max_attempts if retry else None} attempts, {queue.desired_state}, {target}"
    )


def _service_summary(service: PlannedService) -> str:
    envs = [
        f"{e.name}=<secret {e.secret}>" if e.from_secret else f"{e.name}={e.value}"
        for container in service.containers
        for e in container.envs
    ]
    return (
        f"{service.ingress}, runs as {service.runtime_account}, "
        f"deletion protection {'on' if service.deletion_protection else 'off'}"
        + (f"; env {', '.join(envs)}" if envs else "")
    )


def _summary(resource: PlannedResource) -> str:
    """The few inputs a reader of a preview wants to see next to a resource."""
    if resource.type == QUEUE_TYPE:
        return _queue_summary(PlannedQueue.of(resource))
    if resource.type == RUN_SERVICE_TYPE:
        return _service_summary(PlannedService.of(resource))
    if resource.type in IAM_MEMBER_TYPES:
        grant = IamGrant.of(resource)
        return f"{grant.role} -> {grant.member}"
    if resource.type == SERVICE_ACCOUNT_TYPE:
        return ServiceAccount.of(resource).email or ""
    if resource.type == PROJECT_SERVICE_TYPE:
        return str(resource.inputs.get("service", ""))
    if resource.type == IMAGE_TYPE:
        return ", ".join(Image.of(resource).tags)
    return ""


def render_text(plan: Plan) -> str:
    """A tree by parent, like `pulumi preview`, then the stack outputs."""
    rows: list[tuple[str, str, str]] = [("pulumi:pulumi:Stack", f"{plan.project}-{plan.stack}", "")]

    def walk(parent: str | None, prefix: str) -> None:
        children = plan.children(parent)
        for index, child in enumerate(children):
            last = index == len(children) - 1
            rows.append(
                (f"{prefix}{'└─ ' if last else '├─ '}{child.type}", child.name, _summary(child))
            )
            walk(child.urn, prefix + ("   " if last else "│  "))

    walk(None, "")
    type_width = max(len(r[0]) for r in rows)
    name_width = max(len(r[1]) for r in rows)
    custom = sum(1 for r in plan.resources if not r.is_component)
    lines = [
        f"Plan of stack {plan.stack} ({plan.project}), offline under mocks: "
        f"{custom} resources in {len(plan.resources) - custom} components",
        "",
        f"     {'Type':<{type_width}}  {'Name':<{name_width}}  Info",
    ]
    for type_, name, info in rows:
        lines.append(f" +   {type_:<{type_width}}  {name:<{name_width}}  {info}".rstrip())
    lines += ["", "Outputs:"]
    key_width = max((len(k) for k in plan.outputs), default=0)
    for key, value in plan.outputs.items():
        lines.append(f"    {key:<{key_width}}: {json.dumps(value)}")
    return "\n".join(lines + _routing_lines(plan)) + "\n"


def _is_routed(plan: Plan) -> bool:
    """Several queues or routes: a single-queue plan renders as it always did."""
    exports = plan.exports
    return len(exports.queues) > 1 or bool(exports.routes)


def _routing_lines(plan: Plan) -> list[str]:
    """Each queue by key: its settings and the task types routed to it."""
    if not _is_routed(plan):
        return []
    exports = plan.exports
    planned = {q.path: q for q in plan.queues()}
    lines = ["", "Queues and routes (a type without a route goes to default):"]
    width = max(len(key) for key in exports.queues)
    for key, path in exports.queues.items():
        queue = planned.get(path)
        summary = _queue_summary(queue) if queue else "(not in the plan)"
        deadline = exports.dispatch_deadlines.get(key, "?")
        types = ", ".join(exports.routes_to(key)) or "(no route)"
        lines.append(f"    {key:<{width}}: {summary}, deadline {deadline}; routes: {types}")
    return lines


# --- mermaid ------------------------------------------------------------------------

_SHAPES = {
    "box": '{id}["{text}"]',
    "round": '{id}("{text}")',
    "queue": '{id}[["{text}"]]',
    "person": '{id}(["{text}"])',
}


@dataclass
class _Graph:
    nodes: dict[str, str] = field(default_factory=dict)  # key -> "id[label]"
    ids: dict[str, str] = field(default_factory=dict)
    edges: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)
    accounts_by_member: dict[str, str] = field(default_factory=dict)
    accounts_by_name: dict[str, str] = field(default_factory=dict)

    def node(self, key: str, label: str, shape: str = "box") -> str:
        if key not in self.ids:
            node_id = f"n{len(self.ids)}"
            self.ids[key] = node_id
            self.nodes[key] = _SHAPES[shape].format(id=node_id, text=label.replace('"', "'"))
        return self.ids[key]

    def edge(self, source: str, target: str, label: str, style: str = "-->") -> None:
        self.edges.setdefault((source, target, style), []).append(label)

    def principal(self, member: str) -> str:
        if member in self.accounts_by_member:
            return self.accounts_by_member[member]
        return self.node(f"member:{member}", member, "person")

    def lines(self) -> list[str]:
        out = [f"    {node}" for node in self.nodes.values()]
        for (source, target, style), labels in self.edges.items():
            label = ", ".join(dict.fromkeys(labels))
            out.append(f'    {source} {style}|"{label}"| {target}')
        return out


def _short_role(role: str) -> str:
    return role.removeprefix("roles/")


def _grant_label(grant: IamGrant) -> str:
    if grant.role == SERVICE_ACCOUNT_USER_ROLE:
        return "acts as (iam.serviceAccountUser)"
    return _short_role(grant.role)


def _draw_grants(
    g: _Graph, plan: Plan, queue_nodes: dict[str, str], service_nodes: dict[str, str]
) -> None:
    """Who may enqueue, invoke, act as whom, and what runs with project roles."""
    for grant in plan.queue_grants():
        target = queue_nodes.get(grant.target)
        if target:
            g.edge(g.principal(grant.member), target, _short_role(grant.role))
    for grant in plan.run_invoker_grants():
        target = service_nodes.get(grant.target)
        if target:
            g.edge(g.principal(grant.member), target, _short_role(grant.role))
    for grant in plan.account_grants():
        # An account bootstrap/ created is named by its resource name
        # (projects/P/serviceAccounts/EMAIL) and drawn as its member.
        target = g.accounts_by_name.get(grant.target) or g.principal(
            "serviceAccount:" + grant.target.rsplit("/", 1)[-1]
        )
        g.edge(g.principal(grant.member), target, _grant_label(grant))
    project = str(plan.exports.project or "project")
    for grant in plan.project_grants():
        target = g.node(f"project:{project}", f"project {project}")
        g.edge(g.principal(grant.member), target, _short_role(grant.role), "-.->")


def _draw_runtime(
    g: _Graph, plan: Plan, services: dict[str, PlannedService], service_nodes: dict[str, str]
) -> None:
    """The service's runtime identity and image, and where the image is pushed."""

    def image_node(image: Image) -> str:
        return g.node(f"image:{image.resource.name}", "image built from service/")

    for name, service in services.items():
        if service.runtime_account:
            member = f"serviceAccount:{service.runtime_account}"
            g.edge(service_nodes[name], g.principal(member), "runs as", "-.->")
        for image in plan.images():
            g.edge(image_node(image), service_nodes[name], "image", "-.->")
    for repository in plan.repositories():
        for image in plan.images():
            g.edge(
                image_node(image),
                g.node(
                    f"repo:{repository.resource.name}",
                    f"Artifact Registry<br/>{repository.repository_id}",
                ),
                "pushed to",
                "-.->",
            )


def _draw_routes(
    g: _Graph, plan: Plan, queues: dict[str, PlannedQueue], queue_nodes: dict[str, str]
) -> None:
    """Task types -> the queue their route names; one node for the unrouted types."""
    exports = plan.exports
    by_key = {
        key: queue_nodes[name]
        for name, queue in queues.items()
        for key, path in exports.queues.items()
        if path == queue.path
    }
    for task_type, key in sorted(exports.routes.items()):
        if key in by_key:
            g.edge(
                g.node(f"type:{task_type}", f"task type {task_type}", "box"), by_key[key], "route"
            )
    if DEFAULT_QUEUE_KEY in by_key:
        g.edge(g.node("type:*", "every other task type", "box"), by_key[DEFAULT_QUEUE_KEY], "route")


DIAGRAM_MARK = "%% the plan, drawn by python -m plan --format mermaid"
"""First line of every plan diagram, by which documents' embedded copies are found."""


def render_mermaid(plan: Plan) -> str:
    """Resources and the IAM edges: who may invoke, who may enqueue, who acts as whom."""
    g = _Graph()
    for account in plan.service_accounts():
        email = account.email if account.email is not None else account.resource.name
        key = g.node(f"account:{email}", f"{account.account_id}<br/>{email}", "person")
        g.accounts_by_member[f"serviceAccount:{email}"] = key
        g.accounts_by_name[account.full_name or ""] = key

    queues = {q.name: q for q in plan.queues()}
    keys = plan.exports.queue_keys_by_path()
    routed = _is_routed(plan)

    def queue_label(queue: PlannedQueue) -> str:
        # The key is drawn only when there are several queues: one queue is `default`.
        key = f"<br/>queue key {keys[queue.path]}" if routed and queue.path in keys else ""
        return f"Cloud Tasks queue<br/>{queue.name}{key}"

    queue_nodes = {
        name: g.node(f"queue:{name}", queue_label(queue), "queue") for name, queue in queues.items()
    }
    if routed:
        _draw_routes(g, plan, queues, queue_nodes)
    services = {str(s.name): s for s in plan.services()}
    service_nodes = {
        name: g.node(f"service:{name}", f"Cloud Run service<br/>{name}", "round")
        for name in services
    }
    _draw_grants(g, plan, queue_nodes, service_nodes)
    _draw_runtime(g, plan, services, service_nodes)
    for name, queue in queues.items():
        oidc = "OIDC token set per task"
        if queue.http_target:
            token = queue.http_target.oidc_token
            oidc = f"OIDC as {token.service_account_email if token else None}"
        for service_name in services:
            g.edge(queue_nodes[name], service_nodes[service_name], f"push task, {oidc}", "==>")
    for agent in plan.service_agents():
        node = g.node(
            f"agent:{agent.resource.name}",
            f"Cloud Tasks service agent<br/>{agent.email or ''}",
            "person",
        )
        for name in queue_nodes:
            g.edge(node, queue_nodes[name], "dispatches", "-.->")

    lines = ["flowchart LR", f"    {DIAGRAM_MARK}", *g.lines()]
    apis = sorted(plan.enabled_apis())
    if apis:
        lines.append(f'    apis["APIs enabled: {", ".join(a.split(".")[0] for a in apis)}"]')
    return "\n".join(lines) + "\n"
