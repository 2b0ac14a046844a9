"""The v2beta3 API (emulator/v2beta3.py) through the official ``tasks_v2beta3`` client,
over gRPC and REST, against a real emulator process and a real local HTTP target."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import requests
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2beta3
from google.cloud.tasks_v2beta3.services.cloud_tasks.transports import CloudTasksGrpcTransport
from google.protobuf import duration_pb2, field_mask_pb2

from emulator.testing import EmulatorProcess
from tests.emulator.conftest import PARENT, unique
from tests.emulator.support import Target

b3 = tasks_v2beta3


@pytest.fixture(scope="module", params=["grpc", "rest"])
def beta(request: pytest.FixtureRequest, emu: EmulatorProcess) -> Iterator[Any]:
    """The official v2beta3 client on each transport."""
    if request.param == "grpc":
        channel = grpc.insecure_channel(emu.grpc_host)
        yield b3.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
        channel.close()
    else:
        yield b3.CloudTasksClient(
            transport="rest",
            client_options=ClientOptions(api_endpoint=emu.http_url),
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )


@pytest.fixture
def beta_queue(beta: Any) -> Iterator[str]:
    name = f"{PARENT}/queues/{unique('b3')}"
    beta.create_queue(parent=PARENT, queue={"name": name})
    yield name
    with contextlib.suppress(exceptions.NotFound):
        beta.delete_queue(name=name)


def test_queue_lifecycle(beta: Any) -> None:
    name = f"{PARENT}/queues/{unique('b3')}"
    created = beta.create_queue(
        parent=PARENT,
        queue={
            "name": name,
            "rate_limits": {"max_dispatches_per_second": 7},
            "app_engine_http_queue": {"app_engine_routing_override": {"service": "worker"}},
        },
    )
    assert created.type_ == b3.Queue.Type.PUSH
    assert created.rate_limits.max_dispatches_per_second == 7
    assert created.app_engine_http_queue.app_engine_routing_override.service == "worker"
    assert created.task_ttl.total_seconds() == 31 * 24 * 3600
    assert created.tombstone_ttl.total_seconds() == 3600
    assert created.state == b3.Queue.State.RUNNING
    assert beta.get_queue(name=name).name == name
    assert name in [q.name for q in beta.list_queues(parent=PARENT)]
    assert beta.pause_queue(name=name).state == b3.Queue.State.PAUSED
    assert beta.resume_queue(name=name).state == b3.Queue.State.RUNNING
    updated = beta.update_queue(
        queue={"name": name, "rate_limits": {"max_dispatches_per_second": 3}},
        update_mask=field_mask_pb2.FieldMask(paths=["rate_limits.max_dispatches_per_second"]),
    )
    assert updated.rate_limits.max_dispatches_per_second == 3
    assert updated.app_engine_http_queue.app_engine_routing_override.service == "worker"
    beta.delete_queue(name=name)
    with pytest.raises(exceptions.NotFound):
        beta.get_queue(name=name)


def test_tasks_and_purge(beta: Any, beta_queue: str) -> None:
    beta.pause_queue(name=beta_queue)
    task = beta.create_task(
        request={
            "parent": beta_queue,
            "task": {"http_request": {"url": "http://127.0.0.1:9/x", "body": b"hello"}},
            "response_view": b3.Task.View.FULL,
        }
    )
    assert task.http_request.body == b"hello"
    assert task.dispatch_deadline.total_seconds() == 600
    assert beta.get_task(name=task.name).http_request.url == "http://127.0.0.1:9/x"
    assert [t.name for t in beta.list_tasks(parent=beta_queue)] == [task.name]
    beta.delete_task(name=task.name)
    with pytest.raises(exceptions.NotFound):
        beta.get_task(name=task.name)
    beta.create_task(parent=beta_queue, task={"http_request": {"url": "http://127.0.0.1:9/y"}})
    assert beta.purge_queue(name=beta_queue).purge_time
    assert list(beta.list_tasks(parent=beta_queue)) == []


def test_task_delivered_and_run(beta: Any, beta_queue: str, target: Target) -> None:
    task = beta.create_task(
        parent=beta_queue,
        task={
            "http_request": {
                "url": target.url("/beta"),
                "http_method": b3.HttpMethod.PUT,
                "headers": {"X-Beta": "yes"},
                "body": b"payload",
            }
        },
    )
    [delivery] = target.wait_for(1, task.name)
    assert (delivery.method, delivery.path, delivery.body) == ("PUT", "/beta", b"payload")
    assert delivery.headers["X-Beta"] == "yes"
    beta.pause_queue(name=beta_queue)
    held = beta.create_task(parent=beta_queue, task={"http_request": {"url": target.url("/r")}})
    ran = beta.run_task(name=held.name)
    assert ran.name == held.name
    assert len(target.wait_for(1, held.name)) == 1


def test_stats_only_when_the_read_mask_names_them(beta: Any, beta_queue: str) -> None:
    beta.pause_queue(name=beta_queue)
    for _ in range(2):
        beta.create_task(parent=beta_queue, task={"http_request": {"url": "http://127.0.0.1:9"}})
    assert not b3.Queue.pb(beta.get_queue(name=beta_queue)).HasField("stats")
    masked = beta.get_queue(
        request={"name": beta_queue, "read_mask": field_mask_pb2.FieldMask(paths=["stats"])}
    )
    assert masked.stats.tasks_count == 2
    assert masked.stats.oldest_estimated_arrival_time
    assert not masked.name  # a read mask returns only what it names


def test_v2_and_v2beta3_share_one_core(beta: Any, client: Any, beta_queue: str) -> None:
    beta.pause_queue(name=beta_queue)
    from_v2 = client.create_task(
        parent=beta_queue, task={"http_request": {"url": "http://127.0.0.1:9/v2"}}
    )
    assert beta.get_task(name=from_v2.name).http_request.url == "http://127.0.0.1:9/v2"
    from_beta = beta.create_task(
        parent=beta_queue, task={"http_request": {"url": "http://127.0.0.1:9/b3"}}
    )
    assert client.get_task(name=from_beta.name).http_request.url == "http://127.0.0.1:9/b3"
    assert client.get_queue(name=beta_queue).state == client.get_queue(name=beta_queue).State.PAUSED


def test_what_the_core_cannot_honour_is_refused(beta: Any, beta_queue: str) -> None:
    # (BadRequest: INVALID_ARGUMENT over gRPC, HTTP 400 over REST.)
    with pytest.raises(exceptions.MethodNotImplemented, match="Pull queues are not emulated"):
        beta.create_queue(
            parent=PARENT,
            queue={"name": f"{PARENT}/queues/{unique('pull')}", "type_": b3.Queue.Type.PULL},
        )
    with pytest.raises(exceptions.MethodNotImplemented, match="--tombstone-seconds"):
        beta.update_queue(
            queue={"name": beta_queue, "tombstone_ttl": duration_pb2.Duration(seconds=60)},
            update_mask=field_mask_pb2.FieldMask(paths=["tombstone_ttl"]),
        )
    with pytest.raises(exceptions.BadRequest, match="immutable"):
        beta.update_queue(
            queue={"name": beta_queue, "type_": b3.Queue.Type.PUSH},
            update_mask=field_mask_pb2.FieldMask(paths=["type"]),
        )
    with pytest.raises(exceptions.BadRequest, match="push queue"):
        beta.create_task(parent=beta_queue, task={"pull_message": {"payload": b"x"}})
    # The honoured values themselves are accepted.
    same = beta.update_queue(
        queue={"name": beta_queue, "tombstone_ttl": duration_pb2.Duration(seconds=3600)},
        update_mask=field_mask_pb2.FieldMask(paths=["tombstone_ttl"]),
    )
    assert same.tombstone_ttl.total_seconds() == 3600


def test_rest_paths_answer_in_v2beta3_json(emu: EmulatorProcess) -> None:
    name = f"{PARENT}/queues/{unique('b3rest')}"
    created = requests.post(
        f"{emu.http_url}/v2beta3/{PARENT}/queues", json={"name": name}, timeout=5
    )
    assert created.status_code == 200, created.text
    assert created.json()["type"] == "PUSH"
    assert created.json()["tombstoneTtl"] == "3600s"
    stats = requests.get(f"{emu.http_url}/v2beta3/{name}?readMask=stats,name", timeout=5).json()
    assert stats == {"name": name, "stats": {"effectiveExecutionRate": 500.0}}
    missing = requests.get(f"{emu.http_url}/v2beta3/{PARENT}/nothing", timeout=5)
    assert missing.status_code == 404
    assert "/v2beta3/" in missing.json()["error"]["message"]
    requests.delete(f"{emu.http_url}/v2beta3/{name}", timeout=5).raise_for_status()


def test_every_v2beta3_field_is_copied_or_translated() -> None:
    """A field a newer google-cloud-tasks adds to one version only fails here, not at runtime."""
    from google.cloud import tasks_v2

    from emulator.v2beta3 import _BY_HAND

    def fields(message: Any) -> set[str]:
        return {f.name for f in message.pb().DESCRIPTOR.fields}

    for name in (
        "Queue",
        "Task",
        "HttpRequest",
        "AppEngineHttpRequest",
        "RateLimits",
        "RetryConfig",
        "HttpTarget",
        "Attempt",
        "GetQueueRequest",
        "ListQueuesRequest",
        "CreateTaskRequest",
        "UpdateQueueRequest",
        "ListTasksRequest",
    ):
        beta_type, v2_type = getattr(b3, name), getattr(tasks_v2, name)
        full = {fd.full_name for fd in beta_type.pb().DESCRIPTOR.fields}
        only_beta = {f for f in full if f.rsplit(".", 1)[1] not in fields(v2_type)}
        assert only_beta <= _BY_HAND, name
        v2_full = {fd.full_name for fd in v2_type.pb().DESCRIPTOR.fields}
        only_v2 = {f for f in v2_full if f.rsplit(".", 1)[1] not in fields(beta_type)}
        assert only_v2 <= _BY_HAND, name
