"""What `status` shows about each queue of a local stack: key, state, depth and rate.

Every queue in the outputs (`queues`; outputs of a single-queue stack have only
`queue`, shown as `default`) is read from the emulator through the official
google-cloud-tasks client, as an operator would read Cloud Tasks: `GetQueue` for
the state and the rate limits (`max_dispatches_per_second`, the cap the queue
dispatches at, and `max_concurrent_dispatches`), `ListTasks` for the depth (tasks
not yet done). A queue the emulator lacks or an emulator that does not answer is
shown as such, with the API's message, and makes `status` exit 1.

Deliberately not here: rendering (`devstack.local_cli`) and the processes' health
(`devstack.runtime.part_status`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.cloud import tasks_v2

from contract.names import OUTPUT_EMULATOR_HOST
from contract.routing import output_queues
from devstack.runtime import tasks_client

# No retries and short timeouts: a dead emulator must show up as such at once, not
# after the client's default 20 s of retrying UNAVAILABLE.
GET_TIMEOUT_S = 3.0
LIST_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """One queue as the API reports it; `depth` None when it could not be read."""

    key: str
    path: str
    state: str
    depth: int | None
    max_dispatches_per_second: float | None
    max_concurrent_dispatches: int | None
    detail: str

    @property
    def known(self) -> bool:
        return self.depth is not None

    def line(self) -> str:
        """One line: `default: state RUNNING, depth 0, rate 500/s (1000 concurrent) PATH`."""
        depth = "unknown" if self.depth is None else str(self.depth)
        rate = "unknown"
        if self.max_dispatches_per_second is not None:
            rate = f"{self.max_dispatches_per_second:g}/s"
            if self.max_concurrent_dispatches is not None:
                rate += f" ({self.max_concurrent_dispatches} concurrent)"
        text = f"{self.key}: state {self.state}, depth {depth}, rate {rate}  {self.path}"
        return f"{text} {self.detail}".rstrip()


def _unknown(key: str, path: str, detail: str) -> QueueStatus:
    return QueueStatus(key, path, "unknown", None, None, None, detail)


def _one(client: tasks_v2.CloudTasksClient, key: str, path: str) -> QueueStatus:
    try:
        queue = client.get_queue(name=path, retry=None, timeout=GET_TIMEOUT_S)
        depth = 0
        request = tasks_v2.ListTasksRequest(parent=path, page_size=1000)
        for page in client.list_tasks(request=request, retry=None, timeout=LIST_TIMEOUT_S).pages:
            depth += len(page.tasks)
    except gexc.GoogleAPICallError as exc:
        return _unknown(key, path, f"{type(exc).__name__}: {exc.message}")
    except gexc.RetryError as exc:
        return _unknown(key, path, f"emulator unreachable: {exc}")
    limits = queue.rate_limits
    return QueueStatus(
        key=key,
        path=path,
        state=tasks_v2.Queue.State(queue.state).name,
        depth=depth,
        max_dispatches_per_second=limits.max_dispatches_per_second,
        max_concurrent_dispatches=limits.max_concurrent_dispatches,
        detail="",
    )


def queue_statuses(outputs: Mapping[str, object]) -> list[QueueStatus]:
    """Each queue of the outputs, in their order, read from the stack's emulator."""
    queues = output_queues(outputs)
    host = outputs.get(OUTPUT_EMULATOR_HOST)
    if not isinstance(host, str) or not host:
        return [_unknown(k, p, "no emulator address recorded") for k, p in queues.items()]
    client = tasks_client(host)
    try:
        return [_one(client, key, path) for key, path in queues.items()]
    finally:
        client.transport.close()  # type: ignore[no-untyped-call]
