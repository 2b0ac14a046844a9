"""The built-in task types, registered on import: `smoke` and the `enrich` example.

Deliberately only these two: a team's own types live in its own modules,
listed in `TASKS_EXTRA_MODULES` (README.md, "Adding a task type").
"""

from service.handlers import enrich, smoke

__all__ = ["enrich", "smoke"]
