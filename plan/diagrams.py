"""The plan diagrams embedded in the documentation, kept equal to the program's.

README.md shows the dev stack drawn by `plan.render.render_mermaid`. A plan
diagram is a fenced ```mermaid block containing "APIs enabled:" (hand-drawn
diagrams do not). `python -m plan snapshot --all` (`make snapshots`) rewrites
each such block with the current drawing of the stack it shows, so that after
changing a stack's config (your own project id, say) one command brings every
generated artefact in line. Deliberately only text replacement: drawing is
`plan.render`, evaluating is `plan.engine`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from plan.model import Plan
from plan.render import DIAGRAM_MARK, render_mermaid

DOCUMENTED_STACK = "dev"
"""The stack whose plan the README draws."""

_BLOCK = re.compile(r"```mermaid\n(.*?)```", re.S)
_PLAN_MARK = DIAGRAM_MARK


def documents(root: Path) -> list[Path]:
    """The Markdown files that may embed a plan diagram."""
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.is_file()]


def plan_diagrams(text: str) -> list[str]:
    """The plan diagrams embedded in a document's text."""
    return [block for block in _BLOCK.findall(text) if _PLAN_MARK in block]


def refresh_diagrams(root: Path, plans: Mapping[str, Plan]) -> list[Path]:
    """Redraw every embedded plan diagram from `plans[DOCUMENTED_STACK]`; the files changed."""
    plan = plans.get(DOCUMENTED_STACK)
    if plan is None:
        return []
    drawing = render_mermaid(plan)
    changed = []
    for doc in documents(root):
        text = doc.read_text(encoding="utf-8")
        new = _BLOCK.sub(
            lambda m: f"```mermaid\n{drawing}```" if _PLAN_MARK in m.group(1) else m.group(0),
            text,
        )
        if new != text:
            doc.write_text(new, encoding="utf-8")
            changed.append(doc)
    return changed
