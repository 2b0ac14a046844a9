"""The helper against the real emulator, over real gRPC and REST, no mocked client."""

from __future__ import annotations

import asyncio
import json

import google.auth.transport.requests
import pytest
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2
from google.oauth2 import id_token

from contract.names import HEADER_QUEUE_NAME, HEADER_TASK_NAME
from emulator.testing import EmulatorProcess
from enqueue import (
    AlreadyEnqueuedError,
    AsyncEnqueuer,
    EnqueueFailedError,
    Enqueuer,
    StackOutputs,
    TaskSpec,
    enqueue_many,
    task_id_for_key,
)
from enqueue.defaults import Transport
from tests.enqueue.conftest import (
    AUDIENCE,
    INVOKER,
    Target,
    make_queue,
    outputs_dict,
    outputs_for,
    task_names,
)

pytestmark = pytest.mark.integration
NO_ENV: dict[str, str] = {}


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_task_arrives_right(
    emulator: EmulatorProcess, target: Target, transport: Transport
) -> None:
    queue = make_queue(emulator, paused=False)
    outputs = outputs_for(emulator, queue, target.url + "/")
    with Enqueuer(outputs, transport=transport, env=NO_ENV) as enqueuer:
        name = enqueuer.send(
            "email",
            {"to": "a@example.com", "n": 1},
            key="order-1",
            deadline=30,
            headers={"X-Trace": "t-1"},
        )
    assert name == f"{queue}/tasks/{task_id_for_key('email', 'order-1')}"
    [got] = target.wait_for(1)
    assert got.path == "/tasks/email"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["X-Trace"] == "t-1"
    assert got.headers[HEADER_TASK_NAME] == name.rsplit("/", 1)[1]
    assert got.headers[HEADER_QUEUE_NAME] == queue.rsplit("/", 1)[1]
    assert json.loads(got.body) == {"to": "a@example.com", "n": 1}
    scheme, _, token = got.headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    claims = id_token.verify_token(
        token,
        google.auth.transport.requests.Request(),
        audience=AUDIENCE,
        certs_url=emulator.certs_url,
    )
    assert claims["aud"] == AUDIENCE
    assert claims["email"] == INVOKER


def test_task_as_created_is_visible_to_the_official_client(emulator: EmulatorProcess) -> None:
    queue = make_queue(emulator, paused=True)
    outputs = outputs_for(emulator, queue, "https://worker.example.test")
    with Enqueuer(outputs, env=NO_ENV) as enqueuer:
        name = enqueuer.send("report", {"id": 7}, name="report-7", delay=120)
        task = enqueuer.client.get_task(
            request=tasks_v2.GetTaskRequest(name=name, response_view=tasks_v2.Task.View.FULL)
        )
    assert task.http_request.url == "https://worker.example.test/tasks/report"
    assert task.http_request.oidc_token.audience == AUDIENCE
    assert task.http_request.oidc_token.service_account_email == INVOKER
    assert json.loads(task.http_request.body) == {"id": 7}
    assert task.schedule_time.timestamp() > task.create_time.timestamp() + 100


def test_tasks_get_the_stacks_dispatch_deadline_unless_they_set_their_own(
    emulator: EmulatorProcess,
) -> None:
    queue = make_queue(emulator, paused=True)
    data = {
        **outputs_dict(emulator, queue, "https://worker.example.test"),
        "dispatch_deadline": "60s",
    }
    with Enqueuer(StackOutputs.from_mapping(data), env=NO_ENV) as enqueuer:
        default = enqueuer.send("report", {"id": 1})
        own = enqueuer.send("report", {"id": 2}, deadline=900)
        got = {
            name: enqueuer.client.get_task(name=name).dispatch_deadline.total_seconds()
            for name in (default, own)
        }
    # The stack's deadline (what request_timeout was checked against), not the 10 min default.
    assert got == {default: 60, own: 900}


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_dedup(emulator: EmulatorProcess, transport: Transport) -> None:
    queue = make_queue(emulator, paused=True)
    outputs = outputs_for(emulator, queue, "https://worker.example.test")
    spec = TaskSpec(type="email", key="invoice-9")
    with Enqueuer(outputs, transport=transport, env=NO_ENV) as enqueuer:
        first = enqueuer.enqueue(spec)
        second = enqueuer.enqueue(spec)
    assert (first.status, second.status) == ("created", "already_enqueued")
    assert first.name == second.name
    strict = Enqueuer(outputs, transport=transport, env=NO_ENV, already_exists_is_error=True)
    with strict, pytest.raises(AlreadyEnqueuedError, match="already enqueued: projects/"):
        strict.enqueue(spec)
    assert task_names(emulator, queue) == [first.name]


def test_unnamed_tasks_get_distinct_random_names(emulator: EmulatorProcess) -> None:
    queue = make_queue(emulator, paused=True)
    with Enqueuer(outputs_for(emulator, queue, "http://127.0.0.1:9"), env=NO_ENV) as enqueuer:
        names = {enqueuer.send("ping") for _ in range(5)}
    assert len(names) == 5
    assert set(task_names(emulator, queue)) == names


def test_missing_queue_is_a_clear_error(emulator: EmulatorProcess) -> None:
    queue = "projects/enqueue-test/locations/us-central1/queues/does-not-exist"
    enqueuer = Enqueuer(outputs_for(emulator, queue, "http://127.0.0.1:9"), env=NO_ENV)
    with (
        enqueuer,
        pytest.raises(EnqueueFailedError, match=r"queue .*does-not-exist not found") as info,
    ):
        enqueuer.send("ping")
    assert info.value.attempts == 1  # NOT_FOUND is not retried
    assert isinstance(info.value.__cause__, gexc.NotFound)


def test_async_send_and_dedup(emulator: EmulatorProcess) -> None:
    queue = make_queue(emulator, paused=True)
    outputs = outputs_for(emulator, queue, "http://127.0.0.1:9")

    async def run() -> tuple[str, str, str]:
        async with AsyncEnqueuer(outputs, env=NO_ENV) as enqueuer:
            name = await enqueuer.send("email", {"a": 1}, key="k")
            again = await enqueuer.enqueue(TaskSpec(type="email", key="k"))
            task = await enqueuer.client.get_task(name=name)
            return name, again.status, task.http_request.url

    name, status, url = asyncio.run(run())
    assert status == "already_enqueued"
    assert url == "http://127.0.0.1:9/tasks/email"
    assert task_names(emulator, queue) == [name]


@pytest.mark.parametrize(("transport", "count"), [("grpc", 1000), ("rest", 300)])
def test_bulk_none_lost(emulator: EmulatorProcess, transport: Transport, count: int) -> None:
    queue = make_queue(emulator, paused=True)
    outputs = outputs_for(emulator, queue, "http://127.0.0.1:9")
    # Half named by key (one duplicate pair), half unnamed.
    specs = [
        TaskSpec(type="bulk", data={"i": i}, key=f"k{i}")
        if i % 2
        else TaskSpec(type="bulk", data={"i": i})
        for i in range(count)
    ]
    specs.append(TaskSpec(type="bulk", data={}, key="k1"))
    seen: list[str] = []

    async def run() -> object:
        async with AsyncEnqueuer(outputs, transport=transport, env=NO_ENV) as enqueuer:
            return await enqueue_many(
                enqueuer, specs, concurrency=32, on_outcome=lambda o: seen.append(o.status)
            )

    summary = asyncio.run(run())
    assert summary.failed == []  # type: ignore[attr-defined]
    assert summary.created == count  # type: ignore[attr-defined]
    assert summary.already_enqueued == 1  # type: ignore[attr-defined]
    assert len(seen) == count + 1
    names = task_names(emulator, queue)
    assert len(names) == len(set(names)) == count
    keyed = {f"{queue}/tasks/{task_id_for_key('bulk', f'k{i}')}" for i in range(1, count, 2)}
    assert keyed <= set(names)


def test_a_client_passed_in_stays_open(emulator: EmulatorProcess) -> None:
    queue = make_queue(emulator, paused=True)
    client = emulator.client()
    with Enqueuer(outputs_for(emulator, queue, "http://127.0.0.1:9"), client=client) as enqueuer:
        name = enqueuer.send("ping", name="own-client")
        assert enqueuer.client is client
    assert client.get_task(name=name).name == name  # still usable after the enqueuer closed
