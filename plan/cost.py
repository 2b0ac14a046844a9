"""The estimated monthly cost of a stack, item by item, from its plan and expected volume.

Reads the plan only (so a base branch's committed snapshot is priced the same way
as this branch's plan): the worker's CPU, memory, `min_instances` and billing mode
from its Cloud Run service, each queue's log sampling, whether the stack builds an
image, and the expected volume the `Operations` component recorded as its inputs
(`OperationsConfig`: tasks a day, handler seconds, payload bytes). A plan from
before the volume was declared is priced with the volume given as `fallback`
(the head's, so a comparison shows what the change itself costs).

Every figure is a price of `plan.pricing` times a quantity computed here; the
rules (upper bounds where the truth depends on traffic shape):

- Cloud Tasks: (CreateTask + one delivery) per task, each ceil(payload / 32 KB)
  operations, minus the monthly free million;
- Cloud Run: request-based billing charges an instance while it serves at least
  one request. With tasks arriving at random (Poisson) at rate lambda, each held
  W = its handler time rounded up to 100 ms, L = lambda x W are in flight on average
  (Little's law) and at least one is in flight a share 1 - e^-L of the time; at
  `request_concurrency` C, at least L / C instances are busy. Billable instance
  time is therefore max(1 - e^-L, L / C) x the month (about tasks x W when the
  stack is quiet; concurrency shares instances when it is busy), times the vCPU
  and GiB at the request-based rates, plus one request per task, after the free
  tiers; `min_instances` are billed at the idle rates for the rest of the month;
- Artifact Registry: the images the cleanup policy keeps, beyond the free 0.5 GB;
- Cloud Logging: worker and Cloud Tasks log bytes per task, beyond 50 GiB.

Pure: no I/O, no Pulumi.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.values import parse_cpu, parse_memory_mib
from contract.resources import OPERATIONS_TYPE
from plan import pricing as p
from plan.model import Plan


@dataclass(frozen=True)
class Volume:
    """What the stack is expected to carry."""

    tasks_per_day: float
    handler_seconds: float
    payload_bytes: int

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Volume:
        return cls(
            tasks_per_day=float(data["tasksPerDay"]),
            handler_seconds=float(data["handlerSeconds"]),
            payload_bytes=int(data["payloadBytes"]),
        )

    @property
    def tasks_per_month(self) -> float:
        return self.tasks_per_day * p.DAYS_PER_MONTH


@dataclass(frozen=True)
class CostItem:
    product: str
    item: str
    quantity: float
    unit: str
    usd: float


@dataclass(frozen=True)
class StackCost:
    stack: str
    volume: Volume
    volume_declared: bool  # False: the plan declared none, `fallback` was used
    items: tuple[CostItem, ...]

    @property
    def total_usd(self) -> float:
        return sum(item.usd for item in self.items)

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "volume": {
                "tasksPerDay": self.volume.tasks_per_day,
                "handlerSeconds": self.volume.handler_seconds,
                "payloadBytes": self.volume.payload_bytes,
                "declared": self.volume_declared,
            },
            "items": [item.__dict__ for item in self.items],
            "totalUsd": round(self.total_usd, 2),
            "pricesReadOn": p.PRICES_READ_ON,
        }


DEFAULT_VOLUME = Volume(tasks_per_day=10_000, handler_seconds=0.5, payload_bytes=2048)
"""The `OperationsConfig` defaults (a test keeps them equal)."""


def declared_volume(plan: Plan) -> Volume | None:
    """The expected volume the plan's Operations component recorded, if any."""
    found = plan.of_type(OPERATIONS_TYPE)
    if not found:
        return None
    return Volume.of(found[0].inputs["expectedVolume"])


@dataclass(frozen=True)
class Worker:
    """What the cost of the worker depends on."""

    vcpu: float
    memory_gib: float
    min_instances: int
    max_instances: int
    concurrency: int
    request_based: bool  # cpuIdle: CPU only while a request is served

    @classmethod
    def of(cls, plan: Plan) -> Worker:
        template = plan.services()[0].resource.inputs.get("template", {})
        container = (template.get("containers") or [{}])[0]
        resources = container.get("resources") or {}
        limits = resources.get("limits") or {}
        scaling = template.get("scaling") or {}
        return cls(
            vcpu=float(parse_cpu(str(limits.get("cpu", "1")))),
            memory_gib=parse_memory_mib(str(limits.get("memory", "512Mi"))) / 1024,
            min_instances=int(scaling.get("minInstanceCount", 0)),
            max_instances=int(scaling.get("maxInstanceCount", 100)),
            concurrency=int(template.get("maxInstanceRequestConcurrency", 80)),
            request_based=bool(resources.get("cpuIdle", True)),
        )


def _chunks(payload_bytes: int) -> int:
    return max(1, math.ceil(payload_bytes / p.TASKS_CHUNK_BYTES))


def _beyond(quantity: float, free: float) -> float:
    return max(0.0, quantity - free)


def busy_instance_seconds(
    tasks_per_month: float, handler_seconds: float, concurrency: int
) -> float:
    """Billable instance-seconds a month under request-based billing (see the module doc)."""
    held = math.ceil(handler_seconds / p.RUN_BILLING_GRANULARITY_S - 1e-9)
    in_flight = tasks_per_month / p.SECONDS_PER_MONTH * held * p.RUN_BILLING_GRANULARITY_S
    busy = max(-math.expm1(-in_flight), in_flight / concurrency)
    return busy * p.SECONDS_PER_MONTH


def estimate(plan: Plan, fallback: Volume = DEFAULT_VOLUME) -> StackCost:
    """The stack's estimated monthly cost (USD), item by item."""
    declared = declared_volume(plan)
    volume = declared or fallback
    tasks = volume.tasks_per_month
    worker = Worker.of(plan)
    items: list[CostItem] = []

    operations = tasks * p.TASKS_OPERATIONS_PER_TASK * _chunks(volume.payload_bytes)
    items.append(
        CostItem(
            "Cloud Tasks",
            f"operations (create + delivery, {_chunks(volume.payload_bytes)} x 32 KB chunk(s) "
            f"each; first {p.TASKS_FREE_OPERATIONS:,} free)",
            operations,
            "operations",
            _beyond(operations, p.TASKS_FREE_OPERATIONS) / 1e6 * p.TASKS_USD_PER_MILLION_OPERATIONS,
        )
    )

    active_s = busy_instance_seconds(tasks, volume.handler_seconds, worker.concurrency)
    vcpu_s = active_s * worker.vcpu
    gib_s = active_s * worker.memory_gib
    items += [
        CostItem(
            "Cloud Run",
            f"vCPU-seconds ({worker.vcpu:g} vCPU while serving; first "
            f"{p.RUN_FREE_VCPU_SECONDS:,} free)",
            vcpu_s,
            "vCPU-s",
            _beyond(vcpu_s, p.RUN_FREE_VCPU_SECONDS) * p.RUN_USD_PER_VCPU_SECOND,
        ),
        CostItem(
            "Cloud Run",
            f"GiB-seconds ({worker.memory_gib:g} GiB while serving; first "
            f"{p.RUN_FREE_GIB_SECONDS:,} free)",
            gib_s,
            "GiB-s",
            _beyond(gib_s, p.RUN_FREE_GIB_SECONDS) * p.RUN_USD_PER_GIB_SECOND,
        ),
        CostItem(
            "Cloud Run",
            f"requests (one per task; first {p.RUN_FREE_REQUESTS:,} free)",
            tasks,
            "requests",
            _beyond(tasks, p.RUN_FREE_REQUESTS) / 1e6 * p.RUN_USD_PER_MILLION_REQUESTS,
        ),
    ]
    idle_s = _beyond(worker.min_instances * p.SECONDS_PER_MONTH, active_s)
    items.append(
        CostItem(
            "Cloud Run",
            f"min_instances idle ({worker.min_instances} kept warm)",
            idle_s,
            "instance-s",
            idle_s
            * (
                worker.vcpu * p.RUN_IDLE_USD_PER_VCPU_SECOND
                + worker.memory_gib * p.RUN_IDLE_USD_PER_GIB_SECOND
            ),
        )
    )

    stored_gb = p.WORKER_IMAGE_GB * KEEP_RECENT_IMAGES if plan.images() else 0.0
    items.append(
        CostItem(
            "Artifact Registry",
            f"image storage ({KEEP_RECENT_IMAGES} images kept; "
            f"first {p.REGISTRY_FREE_GB:g} GB free)"
            if stored_gb
            else "image storage (prebuilt image: not this stack's)",
            stored_gb,
            "GB-month",
            _beyond(stored_gb, p.REGISTRY_FREE_GB) * p.REGISTRY_USD_PER_GB_MONTH,
        )
    )

    sampling = max((q.logging_sampling_ratio or 0.0 for q in plan.queues()), default=0.0)
    log_gib = tasks * (p.WORKER_LOG_BYTES_PER_TASK + sampling * p.TASKS_LOG_BYTES_PER_TASK) / 2**30
    items.append(
        CostItem(
            "Cloud Logging",
            f"log ingestion (worker, and Cloud Tasks at sampling {sampling:g}; first "
            f"{p.LOGGING_FREE_GIB} GiB free)",
            log_gib,
            "GiB",
            _beyond(log_gib, p.LOGGING_FREE_GIB) * p.LOGGING_USD_PER_GIB,
        )
    )
    return StackCost(plan.stack, volume, declared is not None, tuple(items))


KEEP_RECENT_IMAGES = 5
"""bootstrap.foundation.KEEP_RECENT_IMAGES (plan may not import bootstrap; a test keeps
them equal)."""
