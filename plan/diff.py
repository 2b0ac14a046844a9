"""The difference between two plans (a change against its snapshot), and its rendering.

`diff_plans(old, new)` compares resources by URN (inputs as dotted paths, parent,
dependencies) and the stack outputs, and every queue by its key (its settings and
the task types routed to it, so a change reads "queue email: rate 2 => 5"
whatever the queue's resource is called); `render_diff` prints it the way
`pulumi preview` lists changes. Pure functions of plans: no evaluation, no files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from contract.resources import QUEUE_TYPE
from plan.model import Plan, PlannedResource
from plan.views import PlannedQueue


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested inputs as dotted paths: `rateLimits.maxDispatchesPerSecond`, `envs[0].value`.

    Two shapes are read the way a reviewer reads them, so one change shows as one line:
    a list of objects that each have a distinct `name` (env vars, ports, volumes) is keyed
    by that name (`envs[TASKS_QUEUES].value`), so inserting one env var is one addition,
    not a shift of every later index; and a string holding a JSON object or array (a
    dashboard's `dashboardJson`, a policy document) is expanded (`dashboardJson<json>...`),
    so one changed tile title is one line instead of two copies of the whole document.
    """
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
        for label, inner in zip(_item_labels(value), value, strict=True):
            out.update(flatten(inner, f"{prefix}[{label}]"))
        return out
    embedded = _embedded_json(value)
    if embedded is not None:
        return flatten(embedded, f"{prefix}<json>")
    return {prefix: value}


def _item_labels(items: list[Any]) -> list[str]:
    """Each item's `name` when every item has a distinct one, else its position."""
    names = [item.get("name") if isinstance(item, Mapping) else None for item in items]
    if all(isinstance(name, str) and name for name in names) and len(set(names)) == len(names):
        return [str(name) for name in names]
    return [str(index) for index in range(len(items))]


def _embedded_json(value: Any) -> Any:
    """The object or array a string holds as JSON, else None (plain strings stay strings)."""
    if not isinstance(value, str) or value.lstrip()[:1] not in ("{", "["):
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict | list) and parsed else None


@dataclass(frozen=True)
class Change:
    path: str
    old: Any
    new: Any


@dataclass(frozen=True)
class QueueChange:
    """One queue, by its key: added, removed, or its settings or routes changed."""

    key: str
    kind: str  # "added", "removed", "changed"
    changes: tuple[Change, ...] = ()
    routes: tuple[str, ...] = ()  # the task types routed to it (in the new plan, if any)


@dataclass(frozen=True)
class PlanDiff:
    added: tuple[PlannedResource, ...]
    removed: tuple[PlannedResource, ...]
    modified: tuple[tuple[PlannedResource, tuple[Change, ...]], ...]
    outputs: tuple[Change, ...]
    queues: tuple[QueueChange, ...] = ()
    notes: tuple[str, ...] = ()
    """What to do by hand for a change to apply safely (e.g. pause before a new target)."""

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.modified or self.outputs)

    @property
    def counts(self) -> str:
        return f"+{len(self.added)} ~{len(self.modified)} -{len(self.removed)}"

    def to_json(self) -> dict[str, Any]:
        def change(c: Change) -> dict[str, Any]:
            return {"path": c.path, "old": c.old, "new": c.new}

        data: dict[str, Any] = {
            "added": [r.urn for r in self.added],
            "removed": [r.urn for r in self.removed],
            "modified": [
                {"urn": r.urn, "changes": [change(c) for c in changes]}
                for r, changes in self.modified
            ],
            "outputs": [change(c) for c in self.outputs],
        }
        if self.notes:
            data["notes"] = list(self.notes)
        if self.queues:  # only when a queue changed, so other diffs read as before
            data["queues"] = [
                {
                    "key": q.key,
                    "kind": q.kind,
                    "routes": list(q.routes),
                    "changes": [change(c) for c in q.changes],
                }
                for q in self.queues
            ]
        return data


_MISSING = "(absent)"


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path, _MISSING), new.get(path, _MISSING)
        if before != after:
            yield Change(path, before, after)


def _compared(resource: PlannedResource) -> dict[str, Any]:
    """What a change to a resource is judged on: its inputs, parent, dependencies and
    whether it is protected from deletion."""
    return {
        **flatten(resource.inputs, "inputs"),
        "parent": resource.parent,
        "dependencies": sorted(resource.dependencies),
        "protect": resource.protect,
    }


def diff_plans(old: Plan, new: Plan) -> PlanDiff:
    """What `new` adds, removes and modifies relative to `old` (resources by URN)."""
    before = {r.urn: r for r in old.resources}
    after = {r.urn: r for r in new.resources}
    modified = []
    for urn, resource in after.items():
        if urn in before:
            changes = tuple(_changes(_compared(before[urn]), _compared(resource)))
            if changes:
                modified.append((resource, changes))
    return PlanDiff(
        added=tuple(r for urn, r in after.items() if urn not in before),
        removed=tuple(r for urn, r in before.items() if urn not in after),
        modified=tuple(modified),
        outputs=tuple(_changes(old.outputs, new.outputs)),
        queues=tuple(_queue_changes(old, new)),
        notes=tuple(_target_notes(before, modified)),
    )


def _target_notes(
    before: Mapping[str, PlannedResource],
    modified: list[tuple[PlannedResource, tuple[Change, ...]]],
) -> Iterator[str]:
    """An existing queue that gains a queue-level target: Google asks to pause it first and
    resume it a minute after the change
    (https://cloud.google.com/tasks/docs/configuring-queues#configure-queue-routing)."""
    for resource, _ in modified:
        if resource.type != QUEUE_TYPE or "httpTarget" not in resource.inputs:
            continue
        if "httpTarget" in before[resource.urn].inputs:
            continue
        if resource.inputs.get("desiredState") == "PAUSED":
            yield (
                f"queue {resource.name} gains a queue-level target while paused: after this "
                "deploy, wait a minute, then set queue_paused: false and deploy again"
            )
        else:
            yield (
                f"queue {resource.name} is running and gains a queue-level target: Google asks "
                "to pause it first; deploy with queue_paused: true as well, wait a minute, then "
                "set queue_paused: false (docs/deploying.md)"
            )


def _queues_by_key(plan: Plan) -> dict[str, PlannedQueue]:
    planned = {q.path: q for q in plan.queues()}
    return {key: planned[path] for key, path in plan.exports.queues.items() if path in planned}


def _queue_changes(old: Plan, new: Plan) -> Iterator[QueueChange]:
    """Every queue whose key, settings or routes differ between the plans."""
    before, after = _queues_by_key(old), _queues_by_key(new)
    for key in [*after, *(k for k in before if k not in after)]:
        old_routes = tuple(old.exports.routes_to(key))
        new_routes = tuple(new.exports.routes_to(key))
        if key not in before:
            yield QueueChange(key, "added", routes=new_routes)
        elif key not in after:
            yield QueueChange(key, "removed", routes=old_routes)
        else:
            changes = list(
                _changes(flatten(before[key].resource.inputs), flatten(after[key].resource.inputs))
            )
            if old_routes != new_routes:
                changes.append(Change("routes", list(old_routes), list(new_routes)))
            if changes:
                yield QueueChange(key, "changed", tuple(changes), new_routes)


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
    if diff.queues:
        lines.append("  Queues (by key):")
        mark = {"added": "+", "removed": "-", "changed": "~"}
        for q in diff.queues:
            routed = f"  (routes: {', '.join(q.routes)})" if q.routes else ""
            lines.append(f"      {mark[q.kind]} {q.key}{routed}")
            for c in q.changes:
                lines.append(f"            {c.path}: {json.dumps(c.old)} => {json.dumps(c.new)}")
    if diff.outputs:
        lines.append("  Outputs:")
        for c in diff.outputs:
            lines.append(f"      ~ {c.path}: {json.dumps(c.old)} => {json.dumps(c.new)}")
    for note in diff.notes:
        lines.append(f"  Note: {note}")
    lines += [
        "",
        f"{len(diff.added)} to add, {len(diff.modified)} to change, "
        f"{len(diff.removed)} to delete. If intended: make snapshots",
    ]
    return "\n".join(lines) + "\n"
