"""`smoke`: the built-in task the smoke test sends; it proves the whole path works.

It echoes what it received and who delivered it, and has no side effects, so
it is safe to send to production at any time. Extra payload fields are kept
(and echoed) rather than rejected so any smoke-test version can use it.
`delay_s` (0..60) holds the answer that long: a harmless way to try dispatch
deadlines, concurrency and graceful shutdown against a real deployment.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from contract.names import SMOKE_TASK_TYPE
from service.context import TaskContext
from service.task_registry import registry


class SmokePayload(BaseModel):
    """Anything; `nonce` is echoed so a caller can match its own task."""

    model_config = ConfigDict(extra="allow")

    nonce: str | None = Field(default=None, max_length=200)
    delay_s: float = Field(default=0, ge=0, le=60)


@registry.task(SMOKE_TASK_TYPE, payload=SmokePayload)
async def smoke(payload: SmokePayload, ctx: TaskContext) -> dict[str, Any]:
    if payload.delay_s:
        await asyncio.sleep(payload.delay_s)
    return {
        "pong": True,
        "nonce": payload.nonce,
        "payload": payload.model_dump(mode="json"),
        "task_name": ctx.task_name,
        "queue_name": ctx.queue_name,
        "retry_count": ctx.retry_count,
        "invoker_email": ctx.invoker_email,
    }
