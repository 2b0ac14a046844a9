"""App Engine targets: ``app_engine_http_request`` tasks and queue ``app_engine_routing_override``.

A real emulator process started with ``--app-engine-host URL`` and
``--app-engine-host worker=URL`` delivers to two real local HTTP servers (the
default service and the ``worker`` service), through the official client over
gRPC and REST. What no local host serves, and the flag's rules, run in-process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Literal

import grpc
import pytest
from google.cloud import tasks_v2

from emulator.__main__ import parse_args
from emulator.appengine import APP_ENGINE_USER_AGENT, AppEngineHosts, build_request
from emulator.errors import ApiError
from emulator.state import QueuePb, QueueState, TaskPb, TaskState
from emulator.testing import EmulatorProcess
from tests.emulator.conftest import PARENT, unique
from tests.emulator.inproc import Harness
from tests.emulator.support import Delivery, Target, eventually, serve_target

FULL = tasks_v2.Task.View.FULL
PROJECT = PARENT.split("/")[1]


class AppEngine:
    """The emulator process and the two local App Engine services it delivers to."""

    def __init__(self, emu: EmulatorProcess, default: Target, worker: Target) -> None:
        self.emu = emu
        self.default = default
        self.worker = worker

    def queue(self, **fields: Any) -> str:
        name = f"{PARENT}/queues/{unique('ae')}"
        self.emu.client().create_queue(parent=PARENT, queue={"name": name, **fields})
        return name


@pytest.fixture(scope="module")
def app_engine() -> Iterator[AppEngine]:
    with serve_target() as default, serve_target() as worker:
        args = (
            "--app-engine-host",
            default.base_url,
            "--app-engine-host",
            f"worker={worker.base_url}/",
        )
        with EmulatorProcess(extra_args=args) as emu:
            yield AppEngine(emu, default, worker)


def _deliveries(target: Target, task_name: str, count: int, timeout: float = 10) -> list[Delivery]:
    task_id = task_name.rsplit("/", 1)[1]

    def mine() -> list[Delivery]:
        with target.lock:
            return [
                d for d in target.deliveries if d.headers.get("X-AppEngine-TaskName") == task_id
            ]

    eventually(lambda: len(mine()) >= count, timeout=timeout)
    return mine()


@pytest.mark.integration
@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_app_engine_task_is_delivered_with_app_engine_headers(
    transport: Literal["grpc", "rest"], app_engine: AppEngine
) -> None:
    client = app_engine.emu.client(transport)
    queue = app_engine.queue()
    before = time.time()
    task = client.create_task(
        parent=queue,
        task={
            "app_engine_http_request": {
                "relative_uri": "/tasks/handle?x=1",
                "headers": {
                    "Content-Type": "application/json",
                    "X-Custom": "yes",
                    "User-Agent": "my-app/1.0",
                    "X-AppEngine-QueueName": "spoofed",
                    "Host": "evil.example",
                },
                "body": b'{"k": "v"}',
            }
        },
    )
    request = task.app_engine_http_request
    assert request.relative_uri == "/tasks/handle?x=1"
    assert request.http_method == tasks_v2.HttpMethod.POST
    assert request.app_engine_routing.host == f"{PROJECT}.appspot.com"
    assert request.body == b""  # the BASIC view omits an App Engine body
    [d] = _deliveries(app_engine.default, task.name, 1)
    assert (d.method, d.path, d.body) == ("POST", "/tasks/handle?x=1", b'{"k": "v"}')
    assert d.headers["X-AppEngine-QueueName"] == queue.rsplit("/", 1)[1]
    assert d.headers["X-AppEngine-TaskName"] == task.name.rsplit("/", 1)[1]
    assert d.headers["X-AppEngine-TaskRetryCount"] == "0"
    assert d.headers["X-AppEngine-TaskExecutionCount"] == "0"
    assert before - 1 <= float(d.headers["X-AppEngine-TaskETA"]) <= time.time()
    assert "X-AppEngine-TaskPreviousResponse" not in d.headers
    assert d.headers["User-Agent"] == f"my-app/1.0 {APP_ENGINE_USER_AGENT}"
    assert d.headers["Content-Type"] == "application/json"
    assert d.headers["X-Custom"] == "yes"
    assert d.headers["Host"] == app_engine.default.base_url.removeprefix("http://")
    assert not any(k.startswith("X-CloudTasks-") for k in d.headers)
    assert "Authorization" not in d.headers


@pytest.mark.integration
def test_body_defaults_to_octet_stream_and_full_view_returns_it(app_engine: AppEngine) -> None:
    client = app_engine.emu.client()
    queue = app_engine.queue()
    app_engine.emu.client().pause_queue(name=queue)
    task = client.create_task(
        parent=queue,
        task={"app_engine_http_request": {"http_method": "PUT", "body": b"raw"}},
    )
    full = client.get_task(request={"name": task.name, "response_view": FULL})
    assert full.app_engine_http_request.body == b"raw"
    assert full.app_engine_http_request.relative_uri == "/"  # "/" when empty (target.proto)
    client.resume_queue(name=queue)
    [d] = _deliveries(app_engine.default, task.name, 1)
    assert (d.method, d.path, d.body) == ("PUT", "/", b"raw")
    assert d.headers["Content-Type"] == "application/octet-stream"
    assert d.headers["User-Agent"] == APP_ENGINE_USER_AGENT


@pytest.mark.integration
def test_task_routing_picks_the_service_host(app_engine: AppEngine) -> None:
    client = app_engine.emu.client()
    queue = app_engine.queue()
    task = client.create_task(
        parent=queue,
        task={
            "app_engine_http_request": {
                "relative_uri": "/work",
                "app_engine_routing": {"service": "worker", "version": "v2"},
            }
        },
    )
    routing = task.app_engine_http_request.app_engine_routing
    assert routing.host == f"v2.worker.{PROJECT}.appspot.com"
    [d] = _deliveries(app_engine.worker, task.name, 1)
    assert d.path == "/work"
    assert _deliveries(app_engine.default, task.name, 0, timeout=0) == []


@pytest.mark.integration
def test_queue_routing_override_wins_over_the_tasks(app_engine: AppEngine) -> None:
    client = app_engine.emu.client("rest")
    queue = app_engine.queue(app_engine_routing_override={"service": "worker"})
    got = client.get_queue(name=queue)
    assert got.app_engine_routing_override.host == f"worker.{PROJECT}.appspot.com"
    task = client.create_task(
        parent=queue,
        task={"app_engine_http_request": {"app_engine_routing": {"service": "default"}}},
    )
    assert task.app_engine_http_request.app_engine_routing.service == "worker"
    [d] = _deliveries(app_engine.worker, task.name, 1)
    assert d.path == "/"


@pytest.mark.integration
def test_retries_carry_retry_count_execution_count_and_previous_response(
    app_engine: AppEngine,
) -> None:
    client = app_engine.emu.client()
    queue = app_engine.queue(
        retry_config={"max_attempts": 2, "min_backoff": "0s", "max_backoff": "0s"}
    )
    task = client.create_task(
        parent=queue, task={"app_engine_http_request": {"relative_uri": "/status/404"}}
    )
    first, second = _deliveries(app_engine.default, task.name, 2)
    assert [
        first.headers["X-AppEngine-TaskRetryCount"],
        second.headers["X-AppEngine-TaskRetryCount"],
    ] == ["0", "1"]
    assert second.headers["X-AppEngine-TaskExecutionCount"] == "1"
    assert second.headers["X-AppEngine-TaskPreviousResponse"] == "404"


# -- in-process: no local host for the service, and the flag's rules --------------------


async def test_an_unserved_service_fails_its_attempts_with_how_to_fix_it() -> None:
    hosts = AppEngineHosts(services={"worker": "http://127.0.0.1:9"})
    async with Harness(app_engine_hosts=hosts) as core:
        queue = core.create_queue(retry_config={"max_attempts": 1})
        task = core.create_task(queue, app_engine_http_request={"relative_uri": "/x"})
        await core.advance(1)
        assert core.deliverer.sent == []
        [drop] = core.emulator.dropped(queue)["recent"]
        assert drop["task"] == task.name
        assert "No local App Engine host for service 'default'" in drop["last_error"]
        assert "--app-engine-host" in drop["last_error"]


async def test_app_engine_deadline_allows_up_to_24h_15s(core: Harness) -> None:
    queue = core.create_queue()
    task = core.create_task(queue, app_engine_http_request={}, dispatch_deadline="86415s")
    assert task.dispatch_deadline.seconds == 86415


def test_app_engine_host_flag_values() -> None:
    hosts = AppEngineHosts.parse(["http://127.0.0.1:8080/", "worker=http://127.0.0.1:8081"])
    assert hosts.base_url("") == "http://127.0.0.1:8080"
    assert hosts.base_url("default") == "http://127.0.0.1:8080"
    assert hosts.base_url("worker") == "http://127.0.0.1:8081"
    assert hosts.base_url("other") == "http://127.0.0.1:8080"
    assert AppEngineHosts.parse(["worker=http://h:1"]).base_url("other") is None
    assert parse_args(["--app-engine-host", "http://h:1"]).app_engine_hosts.default == "http://h:1"


@pytest.mark.parametrize(
    "value", ["127.0.0.1:8080", "http://h:1/path", "ftp://h", "bad.id=http://h:1", "http://h:1?q=1"]
)
def test_bad_app_engine_host_is_a_one_line_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(["--app-engine-host", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "expected [SERVICE=]http://HOST:PORT" in err or "is not an App Engine service id" in err


def test_grpc_code_of_an_undeliverable_app_engine_task_is_failed_precondition() -> None:
    queue = QueueState(pb=QueuePb(name=f"{PARENT}/queues/q"))
    task = TaskState(pb=TaskPb(name=f"{PARENT}/queues/q/tasks/t"), queue=queue, named=True)
    task.pb.app_engine_http_request.relative_uri = "/"
    with pytest.raises(ApiError) as exc:
        build_request(task, 0, AppEngineHosts())
    assert exc.value.code == grpc.StatusCode.FAILED_PRECONDITION
