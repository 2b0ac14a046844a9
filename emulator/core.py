"""The emulator's single source of truth: queues, tasks, tombstones and dispatch.

Both front ends (gRPC and REST) call the same :class:`Emulator` methods with
the protobuf request messages of ``google-cloud-tasks`` and get protobuf
responses back, so the two APIs cannot drift apart. Every method runs on the
event loop thread; nothing here is thread-safe and nothing needs to be.

Deliberately not emulated: IAM (every caller may do everything), App Engine
targets, OAuth access tokens, the 7-day block on re-creating a deleted queue,
BatchCreateTasks/BatchDeleteTasks and CMEK. Each answers with a clear error
rather than pretending.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import heapq
import itertools
import logging
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import grpc
from google.cloud import tasks_v2
from google.protobuf import field_mask_pb2

from contract.limits import (
    DEFAULT_DISPATCH_DEADLINE_S,
    DEFAULT_TOMBSTONE_S,
    MAX_CONCURRENT_DISPATCHES,
    MAX_DISPATCH_DEADLINE_S,
    MAX_DISPATCHES_PER_SECOND,
    MAX_SCHEDULE_AHEAD_S,
    MAX_TASK_BYTES,
    MIN_DISPATCH_DEADLINE_S,
)
from contract.names import (
    CLOUD_TASKS_USER_AGENT,
    HEADER_ETA,
    HEADER_EXECUTION_COUNT,
    HEADER_PREVIOUS_RESPONSE,
    HEADER_QUEUE_NAME,
    HEADER_RETRY_COUNT,
    HEADER_TASK_NAME,
)
from emulator import validation as v
from emulator.errors import (
    ApiError,
    already_exists,
    http_to_rpc_code,
    invalid,
    not_found,
)
from emulator.oidc import OidcIssuer
from emulator.store import Store, StoredTask

log = logging.getLogger("emulator")

# The raw protobuf classes behind the proto-plus types google-cloud-tasks ships.
QueuePb: Any = tasks_v2.Queue.pb()
TaskPb: Any = tasks_v2.Task.pb()
ListQueuesResponsePb: Any = tasks_v2.ListQueuesResponse.pb()
ListTasksResponsePb: Any = tasks_v2.ListTasksResponse.pb()

RUNNING: Final = 1
PAUSED: Final = 2
VIEW_BASIC: Final = 1
VIEW_FULL: Final = 2
METHOD_NAMES: Final = {
    1: "POST",
    2: "GET",
    3: "HEAD",
    4: "PUT",
    5: "DELETE",
    6: "PATCH",
    7: "OPTIONS",
}
BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
SCHEME_HTTP: Final = 1
_SKIP_AUTO_HEADERS: Final = ("Content-Type", "Accept", "Accept-Encoding", "User-Agent")
ENFORCE_IF_NOT_EXISTS: Final = 1

# Google's defaults for a queue created without rate limits or retry config.
DEFAULT_RATE: Final = MAX_DISPATCHES_PER_SECOND
DEFAULT_CONCURRENCY: Final = 1000
DEFAULT_MAX_ATTEMPTS: Final = 100
DEFAULT_MIN_BACKOFF_NS: Final = 100_000_000
DEFAULT_MAX_BACKOFF_S: Final = 3600
DEFAULT_MAX_DOUBLINGS: Final = 16

LIST_QUEUES_MAX_PAGE: Final = 9800
LIST_TASKS_MAX_PAGE: Final = 1000

UPDATABLE_QUEUE_PATHS: Final = frozenset(
    {
        "rate_limits",
        "rate_limits.max_dispatches_per_second",
        "rate_limits.max_concurrent_dispatches",
        "retry_config",
        "retry_config.max_attempts",
        "retry_config.max_retry_duration",
        "retry_config.min_backoff",
        "retry_config.max_backoff",
        "retry_config.max_doublings",
        "stackdriver_logging_config",
        "stackdriver_logging_config.sampling_ratio",
        "http_target",
        "http_target.uri_override",
        "http_target.http_method",
        "http_target.header_overrides",
        "http_target.oidc_token",
        "http_target.oauth_token",
        "app_engine_routing_override",
    }
)
_ALL_MUTABLE = (
    "rate_limits",
    "retry_config",
    "stackdriver_logging_config",
    "http_target",
    "app_engine_routing_override",
)


def burst_for(rate: float) -> int:
    """max_burst_size derived from the rate: queue.proto says it is "generally at
    least equal to max_dispatches_per_second", so one second's worth of tokens."""
    return max(1, math.ceil(rate))


def _set_time(ts: Any, seconds: float) -> None:
    ts.FromNanoseconds(int(seconds * 1e9))


def _get_time(ts: Any) -> float:
    return float(ts.ToNanoseconds()) / 1e9


def _duration_s(d: Any) -> float:
    return float(d.ToNanoseconds()) / 1e9


# Page tokens are "ctpage1:" + the last name of the previous page, base64url. The
# marker and the name's prefix (the listed parent) make a token self-validating:
# garbage, a token of another list, or base64 of anything else is INVALID_ARGUMENT.
_PAGE_MARKER = "ctpage1:"


def _page_token(name: str) -> str:
    return base64.urlsafe_b64encode((_PAGE_MARKER + name).encode()).decode()


def _page_start(token: str, prefix: str) -> str:
    """The name after which the page starts; ``prefix`` is the listed parent + "/"."""
    if not token:
        return ""
    try:
        text = base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        text = ""
    name = text.removeprefix(_PAGE_MARKER)
    if not text.startswith(_PAGE_MARKER) or not name.startswith(prefix) or name == prefix:
        raise invalid(
            f"Invalid page_token {token[:100]!r}: pass back the next_page_token of a previous "
            "response of the same list call, or no page_token for the first page"
        )
    return name


@dataclass(eq=False)
class TaskState:
    pb: Any  # tasks_v2.Task protobuf, full view
    queue: QueueState
    named: bool
    execution_count: int = 0
    first_attempt_at: float | None = None
    previous_response: int | None = None
    in_flight: bool = False
    removed: bool = False
    seq: int = 0


@dataclass(eq=False)
class QueueState:
    pb: Any  # tasks_v2.Queue protobuf
    tasks: dict[str, TaskState] = field(default_factory=dict)
    heap: list[tuple[float, int, TaskState]] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0
    tokens: float = 0.0
    refilled_at: float = field(default_factory=time.monotonic)
    runner: asyncio.Task[None] | None = None
    removed: bool = False

    @property
    def name(self) -> str:
        return str(self.pb.name)

    @property
    def rate(self) -> float:
        return float(self.pb.rate_limits.max_dispatches_per_second)

    @property
    def burst(self) -> int:
        return int(self.pb.rate_limits.max_burst_size)

    @property
    def concurrency(self) -> int:
        return int(self.pb.rate_limits.max_concurrent_dispatches)


class Emulator:
    """Queues, tasks and their dispatch, behind the Cloud Tasks v2 API surface."""

    def __init__(
        self,
        store: Store | None = None,
        tombstone_seconds: float = DEFAULT_TOMBSTONE_S,
        issuer: OidcIssuer | None = None,
    ) -> None:
        self.store = store
        self.tombstone_seconds = tombstone_seconds
        if issuer is None:
            key = store.get_meta("oidc_private_key") if store else None
            issuer = OidcIssuer(key)
            if store and key is None:
                # Kept so tokens stay verifiable across restarts of a persistent emulator.
                store.put_meta("oidc_private_key", issuer.private_key_pem)
        self.issuer = issuer
        self.queues: dict[str, QueueState] = {}
        self.tombstones: dict[str, float] = {}
        self._seq = itertools.count(1)
        self._attempts: set[asyncio.Task[None]] = set()
        self._client: aiohttp.ClientSession | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.dispatched = 0  # attempts started, for /emulator/v1/health and benchmarks

    # -- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        # aiohttp rather than httpx: httpx's pool slows down badly with hundreds of
        # concurrent connections (a 500-token burst), aiohttp sustains 500/s on 2 cores.
        # trust_env=False: a proxy from the environment must never see local deliveries.
        self._client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, force_close=False),
            timeout=aiohttp.ClientTimeout(total=None),
            trust_env=False,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        if self.store:
            self._load()
        for q in self.queues.values():
            self._start_runner(q)
        self._sweeper = asyncio.create_task(self._sweep_tombstones())

    async def close(self) -> None:
        runners = [q.runner for q in self.queues.values() if q.runner]
        for task in [*runners, *self._attempts, self._sweeper]:
            if task:
                task.cancel()
        for task in [*runners, *self._attempts, self._sweeper]:
            if task:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._client:
            await self._client.close()
        if self.store:
            self.store.close()

    def _load(self) -> None:
        assert self.store is not None
        for name, data in self.store.load_queues():
            pb = QueuePb.FromString(data)
            self.queues[name] = QueueState(pb=pb, tokens=float(pb.rate_limits.max_burst_size))
        now = time.time()
        for row in self.store.load_tasks():
            q = self.queues.get(row.queue)
            if q is None:
                continue
            ts = TaskState(
                pb=TaskPb.FromString(row.data),
                queue=q,
                named=row.named,
                execution_count=row.execution_count,
                first_attempt_at=row.first_attempt_at,
                previous_response=row.previous_response,
            )
            q.tasks[row.name] = ts
            self._push(ts)
        self.tombstones = {n: e for n, e in self.store.load_tombstones() if e > now}

    def _persist_task(self, ts: TaskState, *, fsync: bool = True) -> None:
        if self.store is None:
            return
        self.store.put_task(
            fsync=fsync,
            task=StoredTask(
                name=str(ts.pb.name),
                queue=ts.queue.name,
                data=ts.pb.SerializeToString(),
                named=ts.named,
                execution_count=ts.execution_count,
                first_attempt_at=ts.first_attempt_at,
                previous_response=ts.previous_response,
            ),
        )

    def _persist_queue(self, q: QueueState) -> None:
        if self.store is not None:
            self.store.put_queue(q.name, q.pb.SerializeToString())

    async def _sweep_tombstones(self) -> None:
        while True:
            await asyncio.sleep(30)
            now = time.time()
            self.tombstones = {n: e for n, e in self.tombstones.items() if e > now}
            if self.store:
                self.store.expire_tombstones(now)

    def reset_tombstones(self) -> int:
        """Forget every reserved task name (admin endpoint for tests)."""
        count = len(self.tombstones)
        self.tombstones.clear()
        if self.store:
            self.store.clear_tombstones()
        return count

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "queues": len(self.queues),
            "tasks": sum(len(q.tasks) for q in self.queues.values()),
            "in_flight": sum(q.in_flight for q in self.queues.values()),
            "dispatched": self.dispatched,
            "tombstones": len(self.tombstones),
            "persistent": self.store is not None,
        }

    # -- queues -----------------------------------------------------------------
    def _queue(self, name: str) -> QueueState:
        v.split_queue_name(name)
        q = self.queues.get(name)
        if q is None:
            raise not_found(f"Queue {name} does not exist. Create it first with CreateQueue.")
        return q

    def _normalise_queue(self, pb: Any) -> None:
        """Fill Google's defaults, truncate durations, validate; raise INVALID_ARGUMENT."""
        rl = pb.rate_limits
        if rl.max_dispatches_per_second == 0:
            rl.max_dispatches_per_second = DEFAULT_RATE
        if not 0 < rl.max_dispatches_per_second <= MAX_DISPATCHES_PER_SECOND or math.isnan(
            rl.max_dispatches_per_second
        ):
            raise invalid(
                "RateLimits.max_dispatches_per_second must be greater than 0 and at most "
                f"{MAX_DISPATCHES_PER_SECOND:g}; got {rl.max_dispatches_per_second}"
            )
        if rl.max_concurrent_dispatches == 0:
            rl.max_concurrent_dispatches = DEFAULT_CONCURRENCY
        if not 0 < rl.max_concurrent_dispatches <= MAX_CONCURRENT_DISPATCHES:
            raise invalid(
                "RateLimits.max_concurrent_dispatches must be between 1 and "
                f"{MAX_CONCURRENT_DISPATCHES}; got {rl.max_concurrent_dispatches}"
            )
        # Output only: always derived from the rate.
        rl.max_burst_size = burst_for(rl.max_dispatches_per_second)

        rc = pb.retry_config
        if rc.max_attempts == 0:
            rc.max_attempts = DEFAULT_MAX_ATTEMPTS
        if rc.max_attempts < -1:
            raise invalid(
                "RetryConfig.max_attempts must be -1 (unlimited) or positive; "
                f"got {rc.max_attempts}"
            )
        if not rc.HasField("min_backoff"):
            rc.min_backoff.FromNanoseconds(DEFAULT_MIN_BACKOFF_NS)
        else:
            rc.min_backoff.nanos = 0  # queue.proto: truncated to whole seconds
        if not rc.HasField("max_backoff"):
            rc.max_backoff.seconds = DEFAULT_MAX_BACKOFF_S
        else:
            rc.max_backoff.nanos = 0
        rc.max_retry_duration.nanos = 0  # 0 s means unlimited
        if rc.max_doublings == 0:
            rc.max_doublings = DEFAULT_MAX_DOUBLINGS
        for label, d in (
            ("min_backoff", rc.min_backoff),
            ("max_backoff", rc.max_backoff),
            ("max_retry_duration", rc.max_retry_duration),
        ):
            if d.seconds < 0 or d.nanos < 0:
                raise invalid(f"RetryConfig.{label} must not be negative")
            v.check_duration(d, f"RetryConfig.{label}")
        if rc.max_doublings < 0:
            raise invalid(f"RetryConfig.max_doublings must be >= 0; got {rc.max_doublings}")
        if _duration_s(rc.min_backoff) > _duration_s(rc.max_backoff):
            raise invalid(
                "RetryConfig.min_backoff must not exceed max_backoff "
                f"({rc.min_backoff.seconds}s > {rc.max_backoff.seconds}s)"
            )
        ratio = pb.stackdriver_logging_config.sampling_ratio
        if not 0.0 <= ratio <= 1.0:
            raise invalid(f"StackdriverLoggingConfig.sampling_ratio must be in [0, 1]; got {ratio}")
        if pb.HasField("http_target"):
            self._check_http_target(pb.http_target)

    @staticmethod
    def _check_http_target(ht: Any) -> None:
        uo = ht.uri_override
        if ht.HasField("uri_override"):
            if uo.HasField("host") and not uo.host:
                raise invalid("HttpTarget.uri_override.host cannot be an empty string")
            if uo.HasField("host") and any(c in uo.host for c in "/?#@ \r\n"):
                raise invalid(f"HttpTarget.uri_override.host {uo.host!r} is not a host name")
            if uo.HasField("port") and not 0 <= uo.port <= 65535:
                raise invalid(f"HttpTarget.uri_override.port must be 0..65535; got {uo.port}")
            path = uo.path_override.path
            if path and not path.startswith("/"):
                raise invalid("HttpTarget.uri_override.path_override.path must start with '/'")
        headers = {h.header.key: h.header.value for h in ht.header_overrides}
        v.check_headers(headers, "HttpTarget.header_overrides")
        if ht.HasField("oidc_token"):
            # FACTS.md: a queue-level OIDC token needs both fields.
            v.check_email(
                ht.oidc_token.service_account_email,
                "HttpTarget.oidc_token.service_account_email",
            )
            if not ht.oidc_token.audience:
                raise invalid(
                    "HttpTarget.oidc_token.audience is required on a queue-level OIDC token: "
                    "set it to the worker's URL or custom audience"
                )
        if ht.HasField("oauth_token"):
            raise invalid("OAuth access tokens are not emulated: use oidc_token for HTTP targets")

    def create_queue(self, req: Any) -> Any:
        v.check_location(req.parent)
        pb = QueuePb()
        pb.CopyFrom(req.queue)
        if not pb.name:
            raise invalid("Queue.name is required: projects/P/locations/L/queues/QUEUE_ID")
        parent, _ = v.split_queue_name(pb.name)
        if parent != req.parent:
            raise invalid(f"Queue.name {pb.name} is not under the parent {req.parent}")
        if pb.name in self.queues:
            raise already_exists(f"Queue {pb.name} already exists")
        # Output-only fields are ignored, as Google does.
        pb.ClearField("state")
        pb.ClearField("purge_time")
        self._normalise_queue(pb)
        pb.state = RUNNING
        q = QueueState(pb=pb, tokens=float(pb.rate_limits.max_burst_size))
        self._persist_queue(q)
        self.queues[pb.name] = q
        self._start_runner(q)
        return pb

    def get_queue(self, req: Any) -> Any:
        return self._queue(req.name).pb

    def list_queues(self, req: Any) -> Any:
        v.check_location(req.parent)
        if req.page_size < 0:
            raise invalid("page_size must not be negative")
        state_filter = self._parse_queue_filter(req.filter)
        size = min(req.page_size or LIST_QUEUES_MAX_PAGE, LIST_QUEUES_MAX_PAGE)
        prefix = req.parent + "/queues/"
        start = _page_start(req.page_token, prefix)
        names = sorted(
            n
            for n, q in self.queues.items()
            if n.startswith(prefix)
            and n > start
            and (state_filter is None or q.pb.state == state_filter)
        )
        resp = ListQueuesResponsePb()
        for n in names[:size]:
            resp.queues.add().CopyFrom(self.queues[n].pb)
        if len(names) > size:
            resp.next_page_token = _page_token(names[size - 1])
        return resp

    @staticmethod
    def _parse_queue_filter(text: str) -> int | None:
        if not text.strip():
            return None
        key, sep, value = text.partition(":")
        states = {"RUNNING": RUNNING, "PAUSED": PAUSED, "DISABLED": 3}
        if sep and key.strip() == "state" and value.strip() in states:
            return states[value.strip()]
        raise invalid(
            f"Unsupported filter {text[:100]!r}: the emulator supports 'state: RUNNING', "
            "'state: PAUSED' and 'state: DISABLED'"
        )

    def update_queue(self, req: Any) -> Any:
        name = req.queue.name
        if not name:
            raise invalid("Queue.name is required in UpdateQueue")
        parent, _ = v.split_queue_name(name)
        paths = list(req.update_mask.paths) if req.HasField("update_mask") else []
        for path in paths:
            if path not in UPDATABLE_QUEUE_PATHS:
                raise invalid(
                    f"update_mask path {path[:100]!r} cannot be updated; updatable paths are "
                    + ", ".join(sorted(UPDATABLE_QUEUE_PATHS))
                )
        existing = self.queues.get(name)
        if existing is None:
            # UpdateQueue creates the queue when it does not exist (cloudtasks.proto).
            create = tasks_v2.CreateQueueRequest.pb()(parent=parent, queue=req.queue)
            return self.create_queue(create)
        pb = QueuePb()
        pb.CopyFrom(existing.pb)
        if paths:
            field_mask_pb2.FieldMask(paths=paths).MergeMessage(
                req.queue, pb, replace_message_field=True, replace_repeated_field=True
            )
        else:
            for f in _ALL_MUTABLE:
                pb.ClearField(f)
                if req.queue.HasField(f):
                    getattr(pb, f).CopyFrom(getattr(req.queue, f))
        self._normalise_queue(pb)
        existing.pb = pb
        existing.tokens = min(existing.tokens, float(pb.rate_limits.max_burst_size))
        self._persist_queue(existing)
        existing.wake.set()
        return pb

    def delete_queue(self, req: Any) -> None:
        q = self._queue(req.name)
        if self.store:
            self.store.delete_queue(q.name)
        del self.queues[q.name]
        q.removed = True
        for ts in q.tasks.values():
            ts.removed = True
        q.tasks.clear()
        q.wake.set()

    def purge_queue(self, req: Any) -> Any:
        q = self._queue(req.name)
        now = time.time()
        self._remove_tasks(q, list(q.tasks.values()), now)
        _set_time(q.pb.purge_time, now)
        self._persist_queue(q)
        return q.pb

    def _set_state(self, name: str, state: int) -> Any:
        q = self._queue(name)
        q.pb.state = state
        self._persist_queue(q)
        q.wake.set()
        return q.pb

    def pause_queue(self, req: Any) -> Any:
        return self._set_state(req.name, PAUSED)

    def resume_queue(self, req: Any) -> Any:
        return self._set_state(req.name, RUNNING)

    # -- tasks ------------------------------------------------------------------
    @staticmethod
    def _view(ts: TaskState, view: int) -> Any:
        view = view or VIEW_BASIC
        if view not in (VIEW_BASIC, VIEW_FULL):
            raise invalid(f"Unknown response_view {view}: use BASIC (1) or FULL (2)")
        out = TaskPb()
        out.CopyFrom(ts.pb)
        out.view = view
        if view == VIEW_BASIC:
            out.http_request.ClearField("body")
        return out

    def _task(self, name: str) -> TaskState:
        queue_name, _ = v.split_task_name(name)
        q = self._queue(queue_name)
        ts = q.tasks.get(name)
        if ts is None:
            raise not_found(f"Task {name} does not exist (it may have completed or been deleted)")
        return ts

    def get_task(self, req: Any) -> Any:
        return self._view(self._task(req.name), req.response_view)

    def list_tasks(self, req: Any) -> Any:
        q = self._queue(req.parent)
        if req.page_size < 0:
            raise invalid("page_size must not be negative")
        size = min(req.page_size or LIST_TASKS_MAX_PAGE, LIST_TASKS_MAX_PAGE)
        start = _page_start(req.page_token, req.parent + "/tasks/")
        view = req.response_view
        names = sorted(n for n in q.tasks if n > start)
        resp = ListTasksResponsePb()
        for n in names[:size]:
            resp.tasks.add().CopyFrom(self._view(q.tasks[n], view))
        if len(names) > size:
            resp.next_page_token = _page_token(names[size - 1])
        return resp

    def create_task(self, req: Any) -> Any:
        q = self._queue(req.parent)
        view = req.response_view
        if view not in (0, VIEW_BASIC, VIEW_FULL):
            raise invalid(f"Unknown response_view {view}: use BASIC (1) or FULL (2)")
        src = req.task
        if src.HasField("app_engine_http_request"):
            raise invalid(
                "App Engine tasks are not emulated: use Task.http_request (an HTTP target)"
            )
        now = time.time()
        pb = TaskPb()
        pb.http_request.CopyFrom(src.http_request)
        self._check_http_request(pb.http_request, q)
        named = bool(src.name)
        if named:
            queue_name, _ = v.split_task_name(src.name)
            if queue_name != q.name:
                raise invalid(f"Task.name {src.name} is not in the queue {q.name}")
            if src.name in q.tasks:
                raise already_exists(f"Requested entity already exists: task {src.name}")
            expires = self.tombstones.get(src.name)
            if expires is not None and expires > now:
                raise already_exists(
                    f"Requested entity already exists: the task name {src.name} was used "
                    "recently (a task name stays reserved after the task ran or was deleted)"
                )
            pb.name = src.name
        else:
            pb.name = f"{q.name}/tasks/{secrets.randbits(63)}"
        if src.HasField("schedule_time"):
            v.check_timestamp(src.schedule_time, "Task.schedule_time")
            eta = _get_time(src.schedule_time)
            if eta - now > MAX_SCHEDULE_AHEAD_S:
                raise invalid(
                    "Task.schedule_time is more than 30 days in the future; "
                    "Cloud Tasks accepts at most 30 days ahead"
                )
            pb.schedule_time.CopyFrom(src.schedule_time)
        else:
            eta = now
            _set_time(pb.schedule_time, now)
        if src.HasField("dispatch_deadline"):
            v.check_duration(src.dispatch_deadline, "Task.dispatch_deadline")
            deadline = _duration_s(src.dispatch_deadline)
            if not MIN_DISPATCH_DEADLINE_S <= deadline <= MAX_DISPATCH_DEADLINE_S:
                raise invalid(
                    f"Task.dispatch_deadline must be between {MIN_DISPATCH_DEADLINE_S}s and "
                    f"{MAX_DISPATCH_DEADLINE_S}s for HTTP tasks; got {deadline:g}s"
                )
            pb.dispatch_deadline.CopyFrom(src.dispatch_deadline)
        else:
            pb.dispatch_deadline.seconds = DEFAULT_DISPATCH_DEADLINE_S
        _set_time(pb.create_time, now)
        size = pb.ByteSize()
        if size > MAX_TASK_BYTES:
            raise invalid(
                f"Task size too large: {size} bytes; the maximum task size is "
                f"{MAX_TASK_BYTES} bytes (1 MiB)"
            )
        if size > 100_000:
            log.warning("task %s is %d bytes; Google documents 100 KB as the limit", pb.name, size)
        ts = TaskState(pb=pb, queue=q, named=named)
        self._persist_task(ts)
        q.tasks[pb.name] = ts
        self._push(ts, eta)
        return self._view(ts, view)

    def _check_http_request(self, hr: Any, q: QueueState) -> None:
        if hr.http_method == 0:
            hr.http_method = 1  # POST is the default
        method = METHOD_NAMES.get(hr.http_method)
        if method is None:
            raise invalid(f"HttpRequest.http_method {hr.http_method} is not a valid HTTP method")
        uri_override = q.pb.http_target.uri_override if q.pb.HasField("http_target") else None
        if hr.url:
            v.check_url(hr.url)
        elif uri_override is None or not uri_override.HasField("host"):
            raise invalid(
                "HttpRequest.url is required (an absolute http:// or https:// URL), "
                "unless the queue's http_target.uri_override sets the host"
            )
        if hr.body and method not in BODY_METHODS:
            raise invalid(
                f"HttpRequest.body may only be set for POST, PUT and PATCH; the method is {method}"
            )
        v.check_headers(dict(hr.headers))
        if hr.HasField("oauth_token"):
            raise invalid("OAuth access tokens are not emulated: use oidc_token for HTTP targets")
        if hr.HasField("oidc_token"):
            v.check_email(hr.oidc_token.service_account_email, "OidcToken.service_account_email")

    def delete_task(self, req: Any) -> None:
        ts = self._task(req.name)
        self._remove_tasks(ts.queue, [ts], time.time())

    def run_task(self, req: Any) -> Any:
        ts = self._task(req.name)
        view = req.response_view
        if not ts.in_flight:
            # Forced now: bypasses pause, rate limit and concurrency, as Google does.
            self._start_attempt(ts)
        return self._view(ts, view)

    def _remove_tasks(
        self, q: QueueState, tasks: list[TaskState], now: float, *, fsync: bool = True
    ) -> None:
        tombstones = [(str(ts.pb.name), now + self.tombstone_seconds) for ts in tasks if ts.named]
        if self.store:
            self.store.delete_tasks([str(ts.pb.name) for ts in tasks], tombstones, fsync=fsync)
        for ts in tasks:
            ts.removed = True
            q.tasks.pop(str(ts.pb.name), None)
        self.tombstones.update(tombstones)

    # -- dispatch ---------------------------------------------------------------
    def _push(self, ts: TaskState, eta: float | None = None) -> None:
        if eta is None:
            eta = _get_time(ts.pb.schedule_time)
        ts.seq = next(self._seq)
        heapq.heappush(ts.queue.heap, (eta, ts.seq, ts))
        ts.queue.wake.set()

    def _start_runner(self, q: QueueState) -> None:
        q.runner = asyncio.create_task(self._run_queue(q), name=f"queue {q.name}")

    async def _run_queue(self, q: QueueState) -> None:
        """Run :meth:`_dispatch_loop`, restarting it if a bug ever escapes it."""
        while not q.removed:
            try:
                await self._dispatch_loop(q)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch loop of %s failed; restarting it", q.name)
                await asyncio.sleep(0.1)

    async def _dispatch_loop(self, q: QueueState) -> None:
        """Hand due tasks to attempts, holding the rate, burst and concurrency limits."""
        started = 0
        while not q.removed:
            q.wake.clear()
            timeout: float | None = None
            if q.pb.state == RUNNING and q.heap:
                eta, seq, ts = q.heap[0]
                if ts.removed or ts.in_flight or ts.seq != seq:
                    heapq.heappop(q.heap)
                    continue
                now = time.time()
                mono = time.monotonic()
                q.tokens = min(float(q.burst), q.tokens + (mono - q.refilled_at) * q.rate)
                q.refilled_at = mono
                if eta > now:
                    timeout = eta - now
                elif q.in_flight >= q.concurrency:
                    timeout = None  # an attempt finishing sets wake
                elif q.tokens < 1.0:
                    timeout = (1.0 - q.tokens) / q.rate
                else:
                    q.tokens -= 1.0
                    heapq.heappop(q.heap)
                    self._start_attempt(ts)
                    started += 1
                    if started % 64 == 0:
                        await asyncio.sleep(0)  # let the API and finished attempts run
                    continue
            try:
                async with asyncio.timeout(timeout):
                    await q.wake.wait()
            except TimeoutError:
                pass

    def _start_attempt(self, ts: TaskState) -> None:
        q = ts.queue
        ts.in_flight = True
        q.in_flight += 1
        self.dispatched += 1
        now = time.time()
        pb = ts.pb
        retry_count = pb.dispatch_count
        pb.dispatch_count += 1
        if not pb.HasField("first_attempt"):
            _set_time(pb.first_attempt.dispatch_time, now)
            ts.first_attempt_at = now
        pb.last_attempt.Clear()
        pb.last_attempt.schedule_time.CopyFrom(pb.schedule_time)
        _set_time(pb.last_attempt.dispatch_time, now)
        request: tuple[str, str, dict[str, str], bytes] | ApiError
        try:
            request = self._build_request(ts, retry_count)
        except ApiError as exc:
            # A queue override can make a stored task undeliverable; fail the attempt.
            request = exc
        except Exception as exc:  # never let one task take the queue's runner down
            log.exception("cannot build the request for %s", pb.name)
            request = ApiError(grpc.StatusCode.INTERNAL, f"Emulator error: {exc}")
        task = asyncio.create_task(self._attempt(ts, request))
        self._attempts.add(task)
        task.add_done_callback(self._attempts.discard)

    def _build_request(
        self, ts: TaskState, retry_count: int
    ) -> tuple[str, str, dict[str, str], bytes]:
        pb = ts.pb
        hr = pb.http_request
        qpb = ts.queue.pb
        method = METHOD_NAMES.get(hr.http_method, "POST")
        url = hr.url
        headers = {k: val for k, val in hr.headers.items() if not v.is_reserved_header(k)}
        oidc = hr.oidc_token if hr.HasField("oidc_token") else None
        if qpb.HasField("http_target"):
            ht = qpb.http_target
            if ht.HasField("uri_override"):
                url = self._override_uri(url, ht.uri_override)
            if ht.http_method:
                method = METHOD_NAMES.get(ht.http_method, method)
            for h in ht.header_overrides:
                if not v.is_reserved_header(h.header.key):
                    headers[h.header.key] = h.header.value
            if ht.HasField("oidc_token"):
                oidc = ht.oidc_token
        v.check_url(url, "the task's effective URL")
        queue_id = ts.queue.name.rsplit("/", 1)[1]
        task_id = str(pb.name).rsplit("/", 1)[1]
        headers["User-Agent"] = CLOUD_TASKS_USER_AGENT
        headers[HEADER_QUEUE_NAME] = queue_id
        headers[HEADER_TASK_NAME] = task_id
        headers[HEADER_RETRY_COUNT] = str(retry_count)
        headers[HEADER_EXECUTION_COUNT] = str(ts.execution_count)
        headers[HEADER_ETA] = f"{_get_time(pb.schedule_time):.6f}"
        if ts.previous_response is not None and retry_count > 0:
            headers[HEADER_PREVIOUS_RESPONSE] = str(ts.previous_response)
        if oidc is not None:
            audience = oidc.audience or url
            token = self.issuer.id_token(oidc.service_account_email, audience)
            headers = {k: val for k, val in headers.items() if k.lower() != "authorization"}
            headers["Authorization"] = f"Bearer {token}"
        body = bytes(hr.body) if method in BODY_METHODS else b""
        return method, url, headers, body

    @staticmethod
    def _override_uri(url: str, uo: Any) -> str:
        parts = urlsplit(url) if url else urlsplit("https://")
        only_missing = uo.uri_override_enforce_mode == ENFORCE_IF_NOT_EXISTS
        scheme, netloc, path, query = parts.scheme, parts.netloc, parts.path, parts.query
        host = parts.hostname or ""
        port = parts.port
        if uo.HasField("scheme") and uo.scheme and not (only_missing and scheme):
            scheme = "http" if uo.scheme == SCHEME_HTTP else "https"
        scheme = scheme or "https"
        if uo.HasField("host") and not (only_missing and host):
            host = uo.host
        if uo.HasField("port") and not (only_missing and port):
            port = uo.port or None
        if uo.HasField("path_override") and not (only_missing and path):
            path = uo.path_override.path
        if uo.HasField("query_override") and not (only_missing and query):
            query = uo.query_override.query_params
        netloc = host if port is None else f"{host}:{port}"
        return urlunsplit((scheme, netloc, path, query, ""))

    async def _attempt(
        self, ts: TaskState, request: tuple[str, str, dict[str, str], bytes] | ApiError
    ) -> None:
        q = ts.queue
        status: int | None = None
        retry_after: float | None = None
        code = grpc.StatusCode.OK
        message = ""
        try:
            if isinstance(request, ApiError):
                code, message = grpc.StatusCode.FAILED_PRECONDITION, request.message
            else:
                method, url, headers, body = request
                assert self._client is not None
                deadline = _duration_s(ts.pb.dispatch_deadline) or DEFAULT_DISPATCH_DEADLINE_S
                try:
                    async with (
                        asyncio.timeout(deadline),
                        self._client.request(
                            method,
                            url,
                            headers=headers,
                            data=body or None,
                            allow_redirects=False,
                            # Cloud Tasks sends no default Content-Type, Accept or encoding.
                            skip_auto_headers=_SKIP_AUTO_HEADERS,
                        ) as resp,
                    ):
                        status = resp.status
                        await _drain(resp)
                    code = http_to_rpc_code(status)
                    message = f"HTTP {status} {resp.reason or ''}".strip()
                    if status in (429, 503):
                        retry_after = _parse_retry_after(resp.headers.get("Retry-After"))
                except TimeoutError:
                    code = grpc.StatusCode.DEADLINE_EXCEEDED
                    message = f"The attempt exceeded the dispatch deadline of {deadline:g}s"
                except (aiohttp.ClientError, ValueError) as exc:
                    code = grpc.StatusCode.UNAVAILABLE
                    message = f"Could not reach {url}: {type(exc).__name__}: {exc}"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # each attempt is isolated: never let one stall a queue
            log.exception("attempt for %s failed unexpectedly", ts.pb.name)
            code = grpc.StatusCode.INTERNAL
            message = f"Emulator error while dispatching: {exc}"
        finally:
            ts.in_flight = False
            q.in_flight -= 1
            q.wake.set()
        try:
            self._finish_attempt(ts, status, code, message, retry_after)
        except Exception:
            # E.g. the data file became unwritable: keep the task and try again later.
            log.exception("recording the attempt of %s failed; retrying the task", ts.pb.name)
            if not ts.removed:
                self._push(ts, time.time() + 1.0)

    def _finish_attempt(
        self,
        ts: TaskState,
        status: int | None,
        code: grpc.StatusCode,
        message: str,
        retry_after: float | None,
    ) -> None:
        if ts.removed:
            return  # deleted or purged while in flight
        now = time.time()
        pb = ts.pb
        q = ts.queue
        if status is not None and 200 <= status < 300:
            self._remove_tasks(q, [ts], now, fsync=False)
            return
        la = pb.last_attempt
        if status is not None:
            pb.response_count += 1
            _set_time(la.response_time, now)
            if status < 500:
                ts.execution_count += 1
        la.response_status.code = code.value[0]
        la.response_status.message = message
        ts.previous_response = status
        rc = q.pb.retry_config
        attempts = pb.dispatch_count
        max_attempts = rc.max_attempts
        max_duration = _duration_s(rc.max_retry_duration)
        attempts_done = max_attempts != -1 and attempts >= max_attempts
        first = ts.first_attempt_at or now
        duration_done = max_duration > 0 and now - first >= max_duration
        # queue.proto: with both limits set, retry until BOTH are reached.
        if max_attempts != -1 and max_duration > 0:
            exhausted = attempts_done and duration_done
        elif max_attempts != -1:
            exhausted = attempts_done
        else:
            exhausted = duration_done
        if exhausted:
            log.info("task %s abandoned after %d attempts", pb.name, attempts)
            self._remove_tasks(q, [ts], now, fsync=False)
            return
        delay = v.retry_delay(
            attempts - 1,
            _duration_s(rc.min_backoff),
            _duration_s(rc.max_backoff),
            rc.max_doublings,
        )
        if retry_after is not None:
            delay = max(delay, retry_after)
        eta = now + delay
        _set_time(pb.schedule_time, eta)
        self._persist_task(ts, fsync=False)
        self._push(ts, eta)


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 24 * 3600 else None


async def _drain(resp: aiohttp.ClientResponse) -> None:
    """Read and discard the worker's response body, at most 1 MiB of it.

    Reading lets the connection be reused; a worker streaming an endless body
    only loses its connection instead of filling the emulator's memory.
    """
    remaining = 1024 * 1024
    while remaining > 0:
        chunk = await resp.content.read(min(remaining, 65536))
        if not chunk:
            return
        remaining -= len(chunk)
    resp.close()
