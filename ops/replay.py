"""Replaying dead letters: each becomes a task again, sent through the enqueue helper.

A replayed task has the dead letter's type, body and headers, goes to the queue its
producer chose on purpose (`--queue`, when the stack still has it) or else to its type's
route, and is named `replay-<hash of the dead letter's object name>` (`replay_task_id`):
replaying the same dead letter twice makes one task, the second create being answered
"already enqueued" by Cloud Tasks' name deduplication (which holds a name for about an
hour after its task ran or was deleted, up to 24 h: a replay after that runs it again).

Every selected record is turned into a checked task (`plan_replays`) before the first
is sent, so a damaged record or a header the API would refuse stops the whole replay
with nothing sent.

Headers: the worker stored the request headers it received (credentials removed).
Those Cloud Tasks sets itself (`X-CloudTasks-*`, `Host`, `User-Agent`...) are refused
by `contract.headers`; the ones proxies and the transport add on the way (`REQUEST_ONLY_HEADERS`)
describe that delivery, not the task; both are left out. So are the worker's
`X-Tasks-Not-Before` (the first attempt's time: a replay is a new first attempt) and
`X-Tasks-Retry-Config` (a task-level policy the replayed task does not carry).

This module deliberately does not read the bucket (`ops.dead_letters`) or print.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from contract.headers import header_name_problem, header_value_problem, reserved_header_reason
from contract.names import HEADER_QUEUE_OVERRIDE
from contract.retry_policy import HEADER_NOT_BEFORE, HEADER_TASK_RETRY_CONFIG
from enqueue.enqueuer import Enqueuer, EnqueueResult
from enqueue.errors import TaskValidationError
from enqueue.outputs import StackOutputs
from enqueue.spec import BuiltTask, TaskSpec, build_task
from ops.dead_letters import DeadLetterRecord

REPLAY_PREFIX: Final = "replay-"
REPLAY_HASH_HEX_CHARS: Final = 32
# Added to a delivery by the transport, proxies or tracing, not chosen by whoever
# enqueued the task; plus the worker's own first-attempt and task-policy headers
# (X-Tasks-Not-Before, X-Tasks-Retry-Config: the dead-letters branch's contract.retry_policy).
REQUEST_ONLY_HEADERS: Final = frozenset(
    {
        "accept",
        "accept-encoding",
        "forwarded",
        "traceparent",
        "tracestate",
        "via",
        "x-cloud-trace-context",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
        HEADER_NOT_BEFORE.lower(),
        HEADER_TASK_RETRY_CONFIG.lower(),
        HEADER_QUEUE_OVERRIDE.lower(),  # set again from the chosen queue (_queue_key)
    }
)


def replay_task_id(record: DeadLetterRecord) -> str:
    """The replayed task's id: deterministic from the dead letter's object name."""
    digest = hashlib.sha256(record.object_name.encode()).hexdigest()
    return REPLAY_PREFIX + digest[:REPLAY_HASH_HEX_CHARS]


def replay_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The stored headers a replayed task carries again (see the module docstring)."""
    kept: dict[str, str] = {}
    for name, value in headers.items():
        if name.lower() in REQUEST_ONLY_HEADERS:
            continue
        if header_name_problem(name) or header_value_problem(name, value):
            continue
        if reserved_header_reason(name, with_token=True) is not None:
            continue
        kept[name] = value
    return kept


@dataclass(frozen=True, slots=True)
class Replay:
    """One dead letter and the task that replays it, checked and ready to send."""

    record: DeadLetterRecord
    spec: TaskSpec
    built: BuiltTask

    def describe(self) -> dict[str, object]:
        """What would be sent (`--dry-run`), without the body bytes."""
        return {
            "dead_letter": self.record.id,
            "task": self.built.task.name,
            "type": self.spec.type,
            "queue": self.built.target.key,
            "url": self.built.task.http_request.url,
            "headers": dict(self.built.task.http_request.headers),
            "body_bytes": len(self.spec.payload()),
        }


def _queue_key(record: DeadLetterRecord, outputs: StackOutputs) -> str | None:
    """The queue the producer chose on purpose (`X-Tasks-Queue-Override`, when the stack
    still has it); None = the type's route today. Not simply the recorded queue: a
    misrouted task, sent back there, would be refused again."""
    chosen = {k.lower(): v for k, v in record.headers.items()}.get(HEADER_QUEUE_OVERRIDE.lower())
    if chosen is not None and chosen in outputs.stack_queues.paths:
        return chosen
    return None


def plan_replays(records: Iterable[DeadLetterRecord], outputs: StackOutputs) -> list[Replay]:
    """Check every record and build its task; raises on the first that cannot be sent."""
    planned: list[Replay] = []
    for record in records:
        try:
            spec = TaskSpec(
                type=record.task_type,
                body=record.body,
                name=replay_task_id(record),
                headers=replay_headers(record.headers),
                queue=_queue_key(record, outputs),
            )
            built = build_task(spec, outputs, task_id=replay_task_id(record))
        except TaskValidationError as exc:
            raise TaskValidationError(
                exc.field, f"dead letter {record.id} cannot be replayed: {exc.message}"
            ) from None
        planned.append(Replay(record, spec, built))
    return planned


def send_replays(replays: Iterable[Replay], enqueuer: Enqueuer) -> Iterable[EnqueueResult]:
    """Create each planned task; a replay sent before is reported as already enqueued."""
    for replay in replays:
        yield enqueuer.enqueue(replay.spec)
