"""The cost and capacity preview of a stack as text people read (the terminal, the PR
comment's Markdown) or JSON, optionally against a base plan (the base branch's snapshot).

`python -m plan --stack S --cost` prints it for this branch's plan;
`python -m plan cost --plan HEAD.json [--base BASE.json]` for plan files, as the
preview workflow's plan-diff job does for every stack. Rendering only: the figures
are `plan.cost`'s and `plan.capacity`'s.
"""

from __future__ import annotations

import json
from typing import Any

from contract.resources import ALERT_POLICY_TYPE
from plan import pricing
from plan.capacity import QueueCapacity, capacity
from plan.cost import StackCost, Volume, declared_volume, estimate
from plan.model import Plan

DEFAULT_BACKLOG = 1000


def backlog_threshold(plan: Plan) -> int:
    """The queue-depth alert's threshold, the backlog whose drain time the preview shows."""
    for resource in plan.of_type(ALERT_POLICY_TYPE):
        if (resource.inputs.get("userLabels") or {}).get("signal") == "queue-depth":
            condition = resource.inputs["conditions"][0]["conditionThreshold"]
            return int(condition["thresholdValue"])
    return DEFAULT_BACKLOG


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "never"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _usd(value: float) -> str:
    return f"{value:,.2f}"


def _signed(value: float) -> str:
    return f"{'+' if value >= 0 else '-'}{abs(value):,.2f}"


def preview(head: Plan, base: Plan | None = None) -> dict[str, Any]:
    """Cost (and the base's, priced with the head's volume when it declared none) and capacity."""
    head_cost = estimate(head)
    base_cost = estimate(base, fallback=head_cost.volume) if base is not None else None
    queues = capacity(head, head_cost.volume, backlog_threshold(head))
    return {"head": head_cost, "base": base_cost, "capacity": queues}


def render_markdown(head: Plan, base: Plan | None = None) -> str:
    data = preview(head, base)
    cost: StackCost = data["head"]
    before: StackCost | None = data["base"]
    lines = [f"#### Cost and capacity: {head.stack}", ""]
    total = f"**USD {_usd(cost.total_usd)} / month**"
    if before is not None:
        total += (
            f" (base branch: USD {_usd(before.total_usd)}, change "
            f"**{_signed(cost.total_usd - before.total_usd)}**)"
        )
    lines += [
        f"Estimated {total} for {_volume(cost.volume)}"
        + ("" if cost.volume_declared else " (defaults: the plan declares no expected volume)")
        + ".",
        "",
        "| product | item | quantity | USD/month |" + (" base | change |" if before else ""),
        "|---|---|---:|---:|" + ("---:|---:|" if before else ""),
    ]
    for index, item in enumerate(cost.items):
        amount = f"{item.quantity:,.0f}" if item.quantity >= 100 else f"{item.quantity:,.2f}"
        row = f"| {item.product} | {item.item} | {amount} {item.unit} | {_usd(item.usd)} |"
        if before is not None:
            was = before.items[index].usd
            row += f" {_usd(was)} | {_signed(item.usd - was)} |"
        lines.append(row)
    lines += [
        "",
        f"List prices read on {pricing.PRICES_READ_ON} (Tier 1 regions; free tiers are per "
        "billing account, applied here as if the stack were alone on it): "
        + ", ".join(f"[{name}]({url})" for name, url in pricing.SOURCES.items())
        + ".",
        "",
    ]
    lines += _capacity_markdown(data["capacity"])
    return "\n".join(lines) + "\n"


def _volume(volume: Volume) -> str:
    return (
        f"{volume.tasks_per_day:,.0f} tasks/day, {volume.handler_seconds:g} s per handler, "
        f"{volume.payload_bytes:,} B payloads"
    )


def _capacity_markdown(queues: list[QueueCapacity]) -> list[str]:
    lines = [
        "| queue | expected | in flight (Little's law) | cap | drain backlog "
        "| drain one day's tasks |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    warnings = []
    for q in queues:
        lines.append(
            f"| {q.key} | {q.arrival_per_s:.3f}/s | {q.in_flight:.2f} of "
            f"{q.max_concurrent_dispatches} (queue), {q.service_slots} (worker) | "
            f"{q.throughput_cap_per_s:g}/s | {q.backlog_tasks:,} tasks: "
            f"{_duration(q.drain_seconds(q.backlog_tasks))} | "
            f"{_duration(q.drain_seconds(q.arrival_per_s * 86_400))} |"
        )
        warnings += [f"- :warning: queue {q.key}: {w}" for w in q.warnings]
    return [*lines, "", *(warnings or ["No capacity warning."]), ""]


def render_text(head: Plan, base: Plan | None = None) -> str:
    """The same as the Markdown, which reads well in a terminal too."""
    return render_markdown(head, base)


def render_json(head: Plan, base: Plan | None = None) -> str:
    data = preview(head, base)
    return (
        json.dumps(
            {
                "stack": head.stack,
                "cost": data["head"].to_json(),
                "baseCost": data["base"].to_json() if data["base"] else None,
                "capacity": [q.to_json() for q in data["capacity"]],
                "volumeDeclaredByBase": declared_volume(base) is not None if base else None,
            },
            indent=2,
        )
        + "\n"
    )
