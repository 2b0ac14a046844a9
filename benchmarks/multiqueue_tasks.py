"""Task types for benchmarks/multiqueue_bench.py, loaded by the worker it starts
(`TASKS_EXTRA_MODULES=benchmarks.multiqueue_tasks`).

Three trivial types, one per benchmark queue, each routed to its own queue by the
benchmark's `TASKS_ROUTES`: the handler does nothing, so the figures measure the
queues, the dispatch and the worker's delivery path (token check, routing check,
idempotency, logging), not a handler.
"""

from __future__ import annotations

from pydantic import BaseModel

from service import TaskContext, registry

BENCH_TYPES = ("call_api", "write_db", "bulk_item")


class BenchPayload(BaseModel):
    n: int = 0


async def _done(payload: BenchPayload, ctx: TaskContext) -> dict[str, int]:
    return {"n": payload.n}


for _name in BENCH_TYPES:
    registry.task(_name, payload=BenchPayload)(_done)
