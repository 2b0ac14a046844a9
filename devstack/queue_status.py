"""What `status` shows about each queue of a local stack: key, state, depth, rate, dropped.

Every queue in the outputs (`queues`; outputs of a single-queue stack have only
`queue`, shown as `default`) is read from the emulator through the official
google-cloud-tasks client, as an operator would read Cloud Tasks: `GetQueue` for
the state and the rate limits (`max_dispatches_per_second`, the cap the queue
dispatches at, and `max_concurrent_dispatches`), `ListTasks` for the depth (tasks
not yet done). The tasks dropped after their last attempt (retries exhausted: the
worker down, 401/403, 5xx to the end) come from the emulator's
`GET <emulator_url>/emulator/v1/dropped`, counted per queue since its data file
began. A queue the emulator lacks or an emulator that does not answer is shown as
such, with the API's message, and makes `status` exit 1.

Deliberately not here: rendering (`devstack.local_cli`) and the processes' health
(`devstack.runtime.part_status`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import httpx
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2

from contract.names import OUTPUT_EMULATOR_HOST, OUTPUT_EMULATOR_URL
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
    dropped: int | None = None  # tasks dropped after their last attempt; None: unknown

    @property
    def known(self) -> bool:
        return self.depth is not None

    def line(self) -> str:
        """One line: `default: state RUNNING, depth 0, rate 500/s (1000 concurrent),
        dropped 0  PATH`."""
        depth = "unknown" if self.depth is None else str(self.depth)
        rate = "unknown"
        if self.max_dispatches_per_second is not None:
            rate = f"{self.max_dispatches_per_second:g}/s"
            if self.max_concurrent_dispatches is not None:
                rate += f" ({self.max_concurrent_dispatches} concurrent)"
        dropped = "unknown" if self.dropped is None else str(self.dropped)
        text = (
            f"{self.key}: state {self.state}, depth {depth}, rate {rate}, dropped {dropped}  "
            f"{self.path}"
        )
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


def dropped_counts(outputs: Mapping[str, object]) -> dict[str, int] | None:
    """Tasks dropped per full queue name, from the emulator; None when it cannot tell."""
    url = outputs.get(OUTPUT_EMULATOR_URL)
    if not isinstance(url, str) or not url:
        return None
    try:
        response = httpx.get(f"{url.rstrip('/')}/emulator/v1/dropped", timeout=GET_TIMEOUT_S)
        response.raise_for_status()
        counts = response.json()["queues"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
    return {str(k): int(v) for k, v in counts.items()} if isinstance(counts, dict) else None


def queue_statuses(outputs: Mapping[str, object]) -> list[QueueStatus]:
    """Each queue of the outputs, in their order, read from the stack's emulator."""
    queues = output_queues(outputs)
    host = outputs.get(OUTPUT_EMULATOR_HOST)
    if not isinstance(host, str) or not host:
        return [_unknown(k, p, "no emulator address recorded") for k, p in queues.items()]
    client = tasks_client(host)
    try:
        statuses = [_one(client, key, path) for key, path in queues.items()]
    finally:
        client.transport.close()  # type: ignore[no-untyped-call]
    dropped = dropped_counts(outputs)
    if dropped is None:
        return statuses
    return [replace(s, dropped=dropped.get(s.path, 0)) if s.known else s for s in statuses]
