"""Task RPCs and HTTP delivery through the official Python client over gRPC."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
import requests
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.protobuf import timestamp_pb2

from contract.limits import MAX_TASK_BYTES
from contract.names import (
    CLOUD_TASKS_USER_AGENT,
    HEADER_ETA,
    HEADER_EXECUTION_COUNT,
    HEADER_QUEUE_NAME,
    HEADER_RETRY_COUNT,
    HEADER_TASK_NAME,
)
from emulator.testing import EmulatorProcess
from tests.emulator.support import eventually

pytestmark = pytest.mark.integration

FULL = tasks_v2.Task.View.FULL


def _in(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int((time.time() + seconds) * 1e9))
    return ts


def test_delivery_carries_method_headers_body_and_cloud_tasks_headers(
    client: Any, queue_name: str, target: Any
) -> None:
    task = client.create_task(
        parent=queue_name,
        task={
            "http_request": {
                "http_method": tasks_v2.HttpMethod.PUT,
                "url": target.url("/tasks/put?x=1"),
                "headers": {"X-Custom": "yes", "Host": "evil.example", "User-Agent": "me"},
                "body": b'{"k": "v"}',
            }
        },
    )
    [d] = target.wait_for(1, task.name)
    assert d.method == "PUT"
    assert d.path == "/tasks/put?x=1"
    assert d.body == b'{"k": "v"}'
    assert d.headers["X-Custom"] == "yes"
    assert d.headers["Host"] == target.base_url.removeprefix("http://")
    assert d.headers["User-Agent"] == CLOUD_TASKS_USER_AGENT
    assert "Content-Type" not in d.headers  # Cloud Tasks sets no default Content-Type
    assert "Authorization" not in d.headers
    assert d.headers[HEADER_QUEUE_NAME] == queue_name.rsplit("/", 1)[1]
    assert d.headers[HEADER_TASK_NAME] == task.name.rsplit("/", 1)[1]
    assert d.headers[HEADER_RETRY_COUNT] == "0"
    assert d.headers[HEADER_EXECUTION_COUNT] == "0"
    eta = float(d.headers[HEADER_ETA])
    assert abs(eta - task.schedule_time.timestamp()) < 0.001


def test_server_generates_a_task_id_when_none_is_given(
    client: Any, queue_name: str, target: Any
) -> None:
    a = client.create_task(parent=queue_name, task={"http_request": {"url": target.url()}})
    b = client.create_task(parent=queue_name, task={"http_request": {"url": target.url()}})
    assert a.name.startswith(queue_name + "/tasks/")
    assert a.name != b.name
    assert a.http_request.http_method == tasks_v2.HttpMethod.POST


def test_successful_task_is_deleted(client: Any, queue_name: str, target: Any) -> None:
    task = client.create_task(parent=queue_name, task={"http_request": {"url": target.url()}})
    target.wait_for(1, task.name)

    def gone() -> bool:
        try:
            client.get_task(name=task.name)
        except exceptions.NotFound:
            return True
        return False

    assert eventually(gone), "a task answered 200 is still there"


def test_deleted_name_is_reserved_until_the_admin_reset(
    client: Any, queue_name: str, target: Any, emu: EmulatorProcess
) -> None:
    name = f"{queue_name}/tasks/reserved"
    task = {"name": name, "http_request": {"url": target.url()}, "schedule_time": _in(60)}
    client.create_task(parent=queue_name, task=task)
    client.delete_task(name=name)
    with pytest.raises(exceptions.AlreadyExists, match="used recently"):
        client.create_task(parent=queue_name, task=task)
    # The documented test hook (POST /emulator/v1/tombstones:reset) frees every reserved name.
    assert emu.reset_tombstones() >= 1
    client.create_task(parent=queue_name, task=task)


def test_tombstone_seconds_flag_sets_the_window(target: Any) -> None:
    with EmulatorProcess(tombstone_seconds=0.5) as emu:
        client = emu.client()
        parent = "projects/p/locations/l"
        queue = client.create_queue(parent=parent, queue={"name": f"{parent}/queues/q"}).name
        task = {"name": f"{queue}/tasks/short", "http_request": {"url": target.url()}}
        task["schedule_time"] = _in(60)
        client.create_task(parent=queue, task=task)
        client.delete_task(name=task["name"])

        def created() -> bool:
            try:
                client.create_task(parent=queue, task=task)
            except exceptions.AlreadyExists:
                return False
            return True

        assert eventually(created, timeout=10), "the name stayed reserved past the window"


def test_named_task_is_deduplicated_while_it_exists(
    client: Any, queue_name: str, target: Any
) -> None:
    name = f"{queue_name}/tasks/order-42"
    task = {"name": name, "http_request": {"url": target.url()}, "schedule_time": _in(60)}
    client.create_task(parent=queue_name, task=task)
    with pytest.raises(exceptions.AlreadyExists):
        client.create_task(parent=queue_name, task=task)


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ({"name": "{q}/tasks/bad.id", "http_request": {"url": "{u}"}}, "task id"),
        ({"name": "{q}/tasks/" + "a" * 501, "http_request": {"url": "{u}"}}, "task id"),
        (
            {"name": "projects/p/locations/l/queues/other/tasks/x", "http_request": {"url": "{u}"}},
            "not in the queue",
        ),
        ({"http_request": {"url": "{u}", "http_method": "GET", "body": b"x"}}, "body"),
        ({"http_request": {"url": "ftp://example.com/x"}}, "http"),
        ({"http_request": {}}, "url is required"),
        ({}, "url is required"),
        ({"http_request": {"url": "{u}"}, "dispatch_deadline": "14s"}, "dispatch_deadline"),
        ({"http_request": {"url": "{u}"}, "dispatch_deadline": "1801s"}, "dispatch_deadline"),
        ({"http_request": {"url": "{u}", "headers": {"X-Big": "v" * 80_000}}}, "80000"),
        ({"http_request": {"url": "{u}", "headers": {"Bad Name": "v"}}}, "header name"),
        (
            {"http_request": {"url": "{u}", "oidc_token": {"service_account_email": "nobody"}}},
            "service account",
        ),
        ({"app_engine_http_request": {"relative_uri": "x"}}, "must begin with a single '/'"),
        (
            {"app_engine_http_request": {"http_method": "PATCH", "body": b"x"}},
            "only be set for POST and PUT",
        ),
        (
            {"app_engine_http_request": {"app_engine_routing": {"service": "a.b"}}},
            "not an App Engine id",
        ),
        ({"app_engine_http_request": {}, "dispatch_deadline": "86416s"}, "86415s"),
    ],
)
def test_invalid_tasks_are_invalid_argument(
    client: Any, queue_name: str, target: Any, task: dict[str, Any], message: str
) -> None:
    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{q}", queue_name).replace("{u}", target.url())
        if isinstance(value, dict):
            return {k: fill(x) for k, x in value.items()}
        return value

    with pytest.raises(exceptions.InvalidArgument, match=message):
        client.create_task(parent=queue_name, task=fill(task))


def test_task_larger_than_1_mib_is_rejected(client: Any, queue_name: str, target: Any) -> None:
    body = b"x" * MAX_TASK_BYTES
    with pytest.raises(exceptions.InvalidArgument, match="Task size too large"):
        client.create_task(
            parent=queue_name, task={"http_request": {"url": target.url(), "body": body}}
        )
    ok = client.create_task(
        parent=queue_name,
        task={"http_request": {"url": target.url(), "body": b"y" * 900_000}},
    )
    [d] = target.wait_for(1, ok.name)
    assert len(d.body) == 900_000


def test_schedule_more_than_30_days_ahead_is_rejected(
    client: Any, queue_name: str, target: Any
) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="30 days"):
        client.create_task(
            parent=queue_name,
            task={"http_request": {"url": target.url()}, "schedule_time": _in(31 * 86400)},
        )


def test_create_task_in_missing_queue_is_not_found(client: Any, parent: str, target: Any) -> None:
    with pytest.raises(exceptions.NotFound, match="CreateQueue"):
        client.create_task(
            parent=f"{parent}/queues/missing", task={"http_request": {"url": target.url()}}
        )


def test_get_task_basic_view_omits_body_and_full_includes_it(
    client: Any, queue_name: str, target: Any
) -> None:
    task = client.create_task(
        parent=queue_name,
        task={"http_request": {"url": target.url(), "body": b"secret"}, "schedule_time": _in(60)},
    )
    assert task.view == tasks_v2.Task.View.BASIC
    assert task.http_request.body == b""
    basic = client.get_task(name=task.name)
    assert basic.http_request.body == b""
    full = client.get_task(request={"name": task.name, "response_view": FULL})
    assert full.view == FULL
    assert full.http_request.body == b"secret"
    assert full.dispatch_deadline.total_seconds() == 600
    assert full.dispatch_count == 0


def test_list_tasks_paginates(client: Any, queue_name: str, target: Any) -> None:
    names = set()
    for i in range(5):
        names.add(
            client.create_task(
                parent=queue_name,
                task={
                    "name": f"{queue_name}/tasks/list-{i}",
                    "http_request": {"url": target.url()},
                    "schedule_time": _in(60),
                },
            ).name
        )
    pages = list(client.list_tasks(request={"parent": queue_name, "page_size": 2}).pages)
    assert [len(p.tasks) for p in pages] == [2, 2, 1]
    assert {t.name for p in pages for t in p.tasks} == names


def test_rest_error_json_has_googles_shape(emu: EmulatorProcess, parent: str) -> None:
    resp = requests.get(f"{emu.http_url}/v2/{parent}/queues/nope", timeout=5)
    assert resp.status_code == 404
    err = resp.json()["error"]
    assert err["code"] == 404
    assert err["status"] == "NOT_FOUND"
    assert "nope" in err["message"]


def test_health_endpoint_counts_dispatches(emu: EmulatorProcess) -> None:
    health = emu.health()
    assert health["status"] == "ok"
    assert health["persistent"] is False
    assert isinstance(health["dispatched"], int)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("schedule_time", {"seconds": -(10**15)}),
        ("schedule_time", {"seconds": 1, "nanos": -5}),
        ("dispatch_deadline", {"seconds": 20, "nanos": -1}),
    ],
)
def test_out_of_range_times_are_invalid_argument(
    client: Any, queue_name: str, target: Any, field: str, value: dict[str, int]
) -> None:
    # Raw protobuf: the client would refuse to build these from datetimes.
    request = tasks_v2.CreateTaskRequest.pb()(parent=queue_name)
    request.task.http_request.url = target.url()
    getattr(request.task, field).MergeFrom(getattr(request.task, field).__class__(**value))
    with pytest.raises(exceptions.InvalidArgument, match="valid"):
        client.create_task(request=tasks_v2.CreateTaskRequest.wrap(request))


@pytest.mark.parametrize("token", ["!!!", "Zm9v", "bm90LWEtdG9rZW4="])
def test_malformed_page_tokens_are_invalid_argument(
    client: Any, emu: EmulatorProcess, queue_name: str, parent: str, token: str
) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="Invalid page_token"):
        client.list_tasks(request={"parent": queue_name, "page_token": token})
    with pytest.raises(exceptions.InvalidArgument, match="Invalid page_token"):
        client.list_queues(request={"parent": parent, "page_token": token})
    for path in (f"/v2/{queue_name}/tasks", f"/v2/{parent}/queues"):
        resp = requests.get(emu.http_url + path, params={"pageToken": token}, timeout=5)
        assert resp.status_code == 400, resp.text
        err = resp.json()["error"]
        assert (err["code"], err["status"]) == (400, "INVALID_ARGUMENT")
        assert "Invalid page_token" in err["message"]


def test_page_token_of_another_list_is_invalid_argument(
    client: Any, make_queue: Any, target: Any
) -> None:
    first, other = make_queue(), make_queue()
    for i in range(3):
        client.create_task(
            parent=first,
            task={
                "name": f"{first}/tasks/t-{i}",
                "http_request": {"url": target.url()},
                "schedule_time": _in(60),
            },
        )
    page = client.list_tasks(request={"parent": first, "page_size": 2}).pages
    token = next(iter(page)).next_page_token
    assert token
    rest = client.list_tasks(request={"parent": first, "page_token": token})
    assert [t.name for t in rest] == [f"{first}/tasks/t-2"]
    with pytest.raises(exceptions.InvalidArgument, match="Invalid page_token"):
        client.list_tasks(request={"parent": other, "page_token": token})


@pytest.mark.parametrize("method", ["CreateTask", "ListQueues", "GetIamPolicy"])
def test_undecodable_request_bytes_are_invalid_argument(
    emu: EmulatorProcess, client: Any, parent: str, method: str
) -> None:
    logged = len(emu.log_text())
    with grpc.insecure_channel(emu.grpc_host) as channel:
        call = channel.unary_unary(f"/google.cloud.tasks.v2.CloudTasks/{method}")
        with pytest.raises(grpc.RpcError) as info:
            call(b"\xff\xff\xff\xff", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Invalid request" in (info.value.details() or "")
    list(client.list_queues(parent=parent))  # still serving
    assert "Traceback" not in emu.log_text()[logged:]
