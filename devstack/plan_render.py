"""Renderings of a `Plan`: a preview-like text tree, a Mermaid diagram of the IAM
wiring, and the difference between two plans (a change against its snapshot).

Everything here is a pure function of plans: no evaluation, no files. The
diagram is derived from the IAM member resources and the service's runtime
account as the plan records them, so it shows what the program declares, not
what it was meant to declare.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from devstack.plan import (
    ACCOUNT,
    ACCOUNT_IAM_MEMBER,
    IMAGE,
    PROJECT_IAM_MEMBER,
    PROJECT_SERVICE,
    QUEUE,
    QUEUE_IAM_MEMBER,
    REPOSITORY,
    RUN_IAM_MEMBER,
    RUN_SERVICE,
    SERVICE_IDENTITY,
    Plan,
    PlannedResource,
)

# --- text ---------------------------------------------------------------------------


def _summary(resource: PlannedResource) -> str:
    """The few inputs a reader of a preview wants to see next to a resource."""
    i = resource.inputs
    if resource.type == QUEUE:
        rate = i.get("rateLimits", {})
        retry = i.get("retryConfig", {})
        target = "queue-level target" if i.get("httpTarget") else "task-level target"
        return (
            f"{rate.get('maxDispatchesPerSecond')}/s, {rate.get('maxConcurrentDispatches')} "
            f"concurrent, {retry.get('maxAttempts')} attempts, {i.get('desiredState')}, {target}"
        )
    if resource.type == RUN_SERVICE:
        return (
            f"{i.get('ingress')}, runs as {i.get('template', {}).get('serviceAccount')}, "
            f"deletion protection {'on' if i.get('deletionProtection') else 'off'}"
        )
    if resource.type in (QUEUE_IAM_MEMBER, RUN_IAM_MEMBER, ACCOUNT_IAM_MEMBER, PROJECT_IAM_MEMBER):
        return f"{i.get('role')} -> {i.get('member')}"
    if resource.type == ACCOUNT:
        return str(resource.outputs.get("email", ""))
    if resource.type == PROJECT_SERVICE:
        return str(i.get("service", ""))
    if resource.type == IMAGE:
        return ", ".join(i.get("tags", []))
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
    return "\n".join(lines) + "\n"


# --- mermaid ------------------------------------------------------------------------


@dataclass
class _Graph:
    nodes: dict[str, str] = field(default_factory=dict)  # key -> "id[label]"
    ids: dict[str, str] = field(default_factory=dict)
    edges: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)

    def node(self, key: str, label: str, shape: str = "box") -> str:
        if key not in self.ids:
            node_id = f"n{len(self.ids)}"
            self.ids[key] = node_id
            text = label.replace('"', "'")
            self.nodes[key] = {
                "box": f'{node_id}["{text}"]',
                "round": f'{node_id}("{text}")',
                "queue": f'{node_id}[["{text}"]]',
                "person": f'{node_id}(["{text}"])',
            }[shape]
        return self.ids[key]

    def edge(self, source: str, target: str, label: str, style: str = "-->") -> None:
        self.edges.setdefault((source, target, style), []).append(label)


def _short_role(role: str) -> str:
    return role.removeprefix("roles/")


def render_mermaid(plan: Plan) -> str:
    """Resources and the IAM edges: who may invoke, who may enqueue, who acts as whom."""
    g = _Graph()
    accounts_by_member: dict[str, str] = {}
    accounts_by_name: dict[str, str] = {}
    for account in plan.of_type(ACCOUNT):
        email = str(account.outputs.get("email", account.name))
        key = g.node(f"account:{email}", f"{account.inputs.get('accountId')}<br/>{email}", "person")
        accounts_by_member[f"serviceAccount:{email}"] = key
        accounts_by_name[str(account.outputs.get("name", ""))] = key

    def principal(member: str) -> str:
        if member in accounts_by_member:
            return accounts_by_member[member]
        return g.node(f"member:{member}", member, "person")

    queues = {str(q.outputs.get("name", q.inputs.get("name"))): q for q in plan.of_type(QUEUE)}
    queue_nodes = {
        name: g.node(f"queue:{name}", f"Cloud Tasks queue<br/>{name}", "queue") for name in queues
    }
    services = {str(s.inputs.get("name")): s for s in plan.of_type(RUN_SERVICE)}
    service_nodes = {
        name: g.node(f"service:{name}", f"Cloud Run service<br/>{name}", "round")
        for name in services
    }
    project = str(plan.outputs.get("project", "project"))

    for binding in plan.of_type(QUEUE_IAM_MEMBER):
        target = queue_nodes.get(str(binding.inputs.get("name")))
        if target:
            g.edge(principal(binding.inputs["member"]), target, _short_role(binding.inputs["role"]))
    for binding in plan.of_type(RUN_IAM_MEMBER):
        target = service_nodes.get(str(binding.inputs.get("name")))
        if target:
            g.edge(principal(binding.inputs["member"]), target, _short_role(binding.inputs["role"]))
    for binding in plan.of_type(ACCOUNT_IAM_MEMBER):
        target = accounts_by_name.get(str(binding.inputs.get("serviceAccountId")))
        if target:
            role = binding.inputs["role"]
            label = (
                "acts as (iam.serviceAccountUser)"
                if role.endswith("serviceAccountUser")
                else _short_role(role)
            )
            g.edge(principal(binding.inputs["member"]), target, label)
    for binding in plan.of_type(PROJECT_IAM_MEMBER):
        target = g.node(f"project:{project}", f"project {project}")
        g.edge(
            principal(binding.inputs["member"]), target, _short_role(binding.inputs["role"]), "-.->"
        )

    for name, service in services.items():
        template = service.inputs.get("template", {})
        runtime = template.get("serviceAccount")
        if runtime:
            g.edge(service_nodes[name], principal(f"serviceAccount:{runtime}"), "runs as", "-.->")
        for image in plan.of_type(IMAGE):
            g.edge(
                g.node(f"image:{image.name}", "image built from service/"),
                service_nodes[name],
                "image",
                "-.->",
            )
    for repository in plan.of_type(REPOSITORY):
        for image in plan.of_type(IMAGE):
            g.edge(
                g.node(f"image:{image.name}", "image built from service/"),
                g.node(
                    f"repo:{repository.name}",
                    f"Artifact Registry<br/>{repository.inputs.get('repositoryId')}",
                ),
                "pushed to",
                "-.->",
            )
    for name, queue in queues.items():
        target = queue.inputs.get("httpTarget")
        oidc = "OIDC token set per task"
        if target:
            oidc = f"OIDC as {target.get('oidcToken', {}).get('serviceAccountEmail')}"
        for service_name in services:
            g.edge(queue_nodes[name], service_nodes[service_name], f"push task, {oidc}", "==>")
    for agent in plan.of_type(SERVICE_IDENTITY):
        node = g.node(
            f"agent:{agent.name}",
            f"Cloud Tasks service agent<br/>{agent.outputs.get('email', '')}",
            "person",
        )
        for name in queue_nodes:
            g.edge(node, queue_nodes[name], "dispatches", "-.->")

    lines = ["flowchart LR"]
    lines += [f"    {node}" for node in g.nodes.values()]
    for (source, target, style), labels in g.edges.items():
        label = ", ".join(dict.fromkeys(labels))
        lines.append(f'    {source} {style}|"{label}"| {target}')
    apis = sorted(str(s.inputs.get("service")) for s in plan.of_type(PROJECT_SERVICE))
    if apis:
        lines.append(f'    apis["APIs enabled: {", ".join(a.split(".")[0] for a in apis)}"]')
    return "\n".join(lines) + "\n"


# --- diff -----------------------------------------------------------------------------


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested inputs as dotted paths: `rateLimits.maxDispatchesPerSecond`, `envs[0].value`."""
    if isinstance(value, Mapping):
        if not value and prefix:
            return {prefix: {}}
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list):
        if not value:
            return {prefix: []}
        out = {}
        for index, inner in enumerate(value):
            out.update(flatten(inner, f"{prefix}[{index}]"))
        return out
    return {prefix: value}


@dataclass(frozen=True)
class Change:
    path: str
    old: Any
    new: Any


@dataclass(frozen=True)
class PlanDiff:
    added: tuple[PlannedResource, ...]
    removed: tuple[PlannedResource, ...]
    modified: tuple[tuple[PlannedResource, tuple[Change, ...]], ...]
    outputs: tuple[Change, ...]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.modified or self.outputs)

    def to_json(self) -> dict[str, Any]:
        def change(c: Change) -> dict[str, Any]:
            return {"path": c.path, "old": c.old, "new": c.new}

        return {
            "added": [r.urn for r in self.added],
            "removed": [r.urn for r in self.removed],
            "modified": [
                {"urn": r.urn, "changes": [change(c) for c in changes]}
                for r, changes in self.modified
            ],
            "outputs": [change(c) for c in self.outputs],
        }


_MISSING = "(absent)"


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path, _MISSING), new.get(path, _MISSING)
        if before != after:
            yield Change(path, before, after)


def diff_plans(old: Plan, new: Plan) -> PlanDiff:
    """What `new` adds, removes and modifies relative to `old` (resources by URN)."""
    before = {r.urn: r for r in old.resources}
    after = {r.urn: r for r in new.resources}
    modified = []
    for urn in after:
        if urn not in before:
            continue
        a, b = before[urn], after[urn]
        old_view = {
            **flatten(a.inputs, "inputs"),
            "parent": a.parent,
            "dependencies": sorted(a.dependencies),
        }
        new_view = {
            **flatten(b.inputs, "inputs"),
            "parent": b.parent,
            "dependencies": sorted(b.dependencies),
        }
        changes = tuple(_changes(old_view, new_view))
        if changes:
            modified.append((b, changes))
    return PlanDiff(
        added=tuple(r for urn, r in after.items() if urn not in before),
        removed=tuple(r for urn, r in before.items() if urn not in after),
        modified=tuple(modified),
        outputs=tuple(_changes(old.outputs, new.outputs)),
    )


def render_diff(diff: PlanDiff, stack: str) -> str:
    if diff.empty:
        return f"Stack {stack}: the plan matches the committed snapshot.\n"
    lines = [f"Stack {stack}: changes against the committed snapshot", ""]
    for r in diff.added:
        lines.append(f"  + {r.type}  {r.name}")
    for r in diff.removed:
        lines.append(f"  - {r.type}  {r.name}")
    for r, changes in diff.modified:
        lines.append(f"  ~ {r.type}  {r.name}")
        for c in changes:
            lines.append(f"        {c.path}: {json.dumps(c.old)} => {json.dumps(c.new)}")
    if diff.outputs:
        lines.append("  Outputs:")
        for c in diff.outputs:
            lines.append(f"      ~ {c.path}: {json.dumps(c.old)} => {json.dumps(c.new)}")
    lines += [
        "",
        f"{len(diff.added)} to add, {len(diff.modified)} to change, "
        f"{len(diff.removed)} to delete. If intended: make snapshots",
    ]
    return "\n".join(lines) + "\n"
