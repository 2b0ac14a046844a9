"""The "Task contracts" section of the pull request's comment, in Markdown.

One table of every change, breaking ones first and flagged, each with its
one-line reason; a headline that says whether tasks already queued are at
risk. Deliberately no comparison here (`task_contracts.compat`) and no I/O.
"""

from __future__ import annotations

from typing import Final

from task_contracts.compat import QUEUED, ContractDiff
from task_contracts.store import CONTRACTS_DIR

HEADING: Final = "### Task contracts"
BREAKING_FLAG: Final = "⚠️ **breaking**"
MIGRATION_HINT: Final = (
    "Keep the worker accepting the old payload (a new optional field with a default, "
    "a widened type) until every queue has drained, or send the new shape as a new "
    "task type; README, *Task contracts*."
)


def render_markdown(diff: ContractDiff, *, base_label: str = "the base branch") -> str:
    lines = [
        HEADING,
        "",
        f"The payload contract of each task type (`{CONTRACTS_DIR}/<type>.schema.json`), "
        f"this change's models against {base_label}'s. A task is validated when it is "
        f"delivered, so {QUEUED} meet the new worker.",
        "",
    ]
    if not diff.base_types:
        lines += [f"{base_label.capitalize()} has no task contracts yet: every type is new.", ""]
    if not diff.changes:
        listed = ", ".join(f"`{t}`" for t in diff.head_types) or "none"
        lines.append(f"No task contract changed (task types: {listed}).")
        return "\n".join(lines) + "\n"

    breaking = diff.breaking
    if breaking:
        types = ", ".join(f"`{t}`" for t in sorted({c.task_type for c in breaking}))
        lines += [
            f"{BREAKING_FLAG}: {len(breaking)} breaking change(s) in {types}: {QUEUED} "
            "would be refused or lose data. " + MIGRATION_HINT,
            "",
        ]
    else:
        lines += ["No breaking change: every task already queued stays valid.", ""]
    summary = []
    if diff.added:
        summary.append("new: " + ", ".join(f"`{t}`" for t in diff.added))
    if diff.removed:
        summary.append("removed: " + ", ".join(f"`{t}`" for t in diff.removed))
    if diff.changed:
        summary.append("changed: " + ", ".join(f"`{t}`" for t in diff.changed))
    lines += ["Task types " + "; ".join(summary) + ".", ""]

    lines += ["| task type | where | change | verdict |", "|---|---|---|---|"]
    ordered = sorted(diff.changes, key=lambda c: (not c.breaking, c.task_type, c.path))
    for change in ordered:
        verdict = f"{BREAKING_FLAG}: {change.reason}" if change.breaking else change.reason
        cells = (f"`{change.task_type}`", f"`{change.path}`", change.what, verdict)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """A table cell: a `|` would end it, a newline would end the row."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
