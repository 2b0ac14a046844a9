"""Shutdown state shared by the app (refuses new work) and the server (waits for it).

Deliberately framework-free: the app only reads `draining` and counts
`inflight`; `service.__main__.DrainingServer` decides when to stop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(slots=True)
class Drain:
    draining: bool = False
    inflight: int = 0
    started_at: float | None = None

    def begin(self) -> None:
        if not self.draining:
            self.draining = True
            self.started_at = time.monotonic()
