"""A readable view of a local stack's logs: the worker's JSON lines and the emulator's.

The worker writes one JSON object a line (Cloud Logging's structured format:
``severity``, ``message``, ``time``, and the task's ``task_type``, ``task_name``,
``outcome``, ``status``...). This module turns each into one short coloured
line, keeps the emulator's plain lines as they are, and filters by task (a
task id or a full task name). Deliberately not here: reading files
continuously or printing (`devstack.tools_cli` does both).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from rich.text import Text

SEVERITY_STYLE = {
    "DEBUG": "dim",
    "INFO": "green",
    "NOTICE": "cyan",
    "WARNING": "yellow",
    "ERROR": "bold red",
    "CRITICAL": "bold red reverse",
}


@dataclass(frozen=True)
class LogLine:
    part: str  # "worker" | "emulator"
    raw: str
    entry: dict[str, object] | None  # the parsed JSON object, when the line is one

    @property
    def task_name(self) -> str:
        return str(self.entry.get("task_name", "")) if self.entry else ""

    def mentions(self, task: str) -> bool:
        """True when the line is about task (its id, or a full name ending in it)."""
        wanted = task.rsplit("/", 1)[-1]
        return wanted == self.task_name or (self.entry is None and wanted in self.raw)


def parse(part: str, raw: str) -> LogLine:
    raw = raw.rstrip("\n")
    try:
        entry = json.loads(raw)
    except json.JSONDecodeError:
        entry = None
    return LogLine(part, raw, entry if isinstance(entry, dict) else None)


def render(line: LogLine) -> Text:
    """One line: time, part, severity, the task (type and id) and the message."""
    text = Text()
    if line.entry is None:
        text.append(f"{line.part:<8} ", style="blue")
        text.append(line.raw)
        return text
    entry = line.entry
    time = str(entry.get("time", ""))[11:23]  # HH:MM:SS.mmm of an ISO timestamp
    severity = str(entry.get("severity", "INFO"))
    text.append(f"{time:<12} ", style="dim")
    text.append(f"{line.part:<8} ", style="blue")
    text.append(f"{severity:<8} ", style=SEVERITY_STYLE.get(severity, ""))
    if line.task_name:
        text.append(f"{entry.get('task_type', '?')}/{line.task_name} ", style="magenta")
    text.append(str(entry.get("message", "")))
    return text
