"""The REST API: the official client with transport="rest", and raw JSON as
Google documents it (camelCase, enum names or ints, base64 bytes, "30s")."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import requests
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.protobuf import field_mask_pb2

from emulator.testing import EmulatorProcess

pytestmark = pytest.mark.integration
FULL = tasks_v2.Task.View.FULL


def test_rest_client_round_trip(rest_client: Any, client: Any, parent: str, target: Any) -> None:
    name = f"{parent}/queues/rest-round-trip"
    q = rest_client.create_queue(
        parent=parent,
        queue={"name": name, "retry_config": {"min_backoff": "2s", "max_attempts": 3}},
    )
    assert q.state == tasks_v2.Queue.State.RUNNING
    assert q.retry_config.min_backoff.total_seconds() == 2
    # Same store behind both front ends.
    assert client.get_queue(name=name) == q
    updated = rest_client.update_queue(
        queue={"name": name, "rate_limits": {"max_dispatches_per_second": 4}},
        update_mask=field_mask_pb2.FieldMask(paths=["rate_limits.max_dispatches_per_second"]),
    )
    assert updated.rate_limits.max_burst_size == 4
    assert rest_client.pause_queue(name=name).state == tasks_v2.Queue.State.PAUSED
    task = rest_client.create_task(
        parent=name,
        task={
            "name": f"{name}/tasks/rest-1",
            "http_request": {
                "url": target.url("/rest"),
                "body": b"\x00\x01binary",
                "headers": {"Content-Type": "application/octet-stream"},
            },
        },
    )
    full = rest_client.get_task(request={"name": task.name, "response_view": FULL})
    assert full.http_request.body == b"\x00\x01binary"
    assert full.dispatch_deadline.total_seconds() == 600
    assert [t.name for t in rest_client.list_tasks(parent=name)] == [task.name]
    rest_client.run_task(name=task.name)
    [d] = target.wait_for(1, task.name)
    assert d.body == b"\x00\x01binary"
    assert d.headers["Content-Type"] == "application/octet-stream"
    assert [q.name for q in rest_client.list_queues(parent=parent) if q.name == name] == [name]
    rest_client.delete_queue(name=name)
    with pytest.raises(exceptions.NotFound):
        rest_client.get_queue(name=name)


def test_rest_client_sees_googles_error_codes(rest_client: Any, parent: str, target: Any) -> None:
    name = f"{parent}/queues/rest-errors"
    rest_client.create_queue(parent=parent, queue={"name": name})
    with pytest.raises(exceptions.Conflict):
        rest_client.create_queue(parent=parent, queue={"name": name})
    with pytest.raises(exceptions.BadRequest, match="task id"):
        rest_client.create_task(
            parent=name, task={"name": f"{name}/tasks/bad!", "http_request": {"url": target.url()}}
        )
    with pytest.raises(exceptions.NotFound):
        rest_client.get_task(name=f"{name}/tasks/missing")
    with pytest.raises(exceptions.MethodNotImplemented):
        rest_client.get_iam_policy(request={"resource": name})


def test_raw_json_uses_camel_case_enum_names_and_durations(
    emu: EmulatorProcess, parent: str, target: Any
) -> None:
    base = f"{emu.http_url}/v2/{parent}/queues"
    name = f"{parent}/queues/raw-json"
    resp = requests.post(
        base,
        json={
            "name": name,
            "rateLimits": {"maxDispatchesPerSecond": 2, "maxConcurrentDispatches": 3},
            "retryConfig": {"minBackoff": "2.5s", "maxAttempts": 5},
        },
        timeout=5,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["state"] == "RUNNING"
    assert body["rateLimits"] == {
        "maxDispatchesPerSecond": 2.0,
        "maxBurstSize": 2,
        "maxConcurrentDispatches": 3,
    }
    assert body["retryConfig"]["minBackoff"] == "2s"
    ints = requests.get(
        f"{emu.http_url}/v2/{name}", params={"$alt": "json;enum-encoding=int"}, timeout=5
    )
    assert ints.json()["state"] == 1

    payload = base64.b64encode(b'{"hello": "world"}').decode()
    created = requests.post(
        f"{emu.http_url}/v2/{name}/tasks",
        json={
            "task": {
                "httpRequest": {"url": target.url("/raw"), "httpMethod": 4, "body": payload},
                "dispatchDeadline": "30s",
            },
            "responseView": "FULL",
        },
        timeout=5,
    )
    assert created.status_code == 200, created.text
    task = created.json()
    assert task["httpRequest"]["httpMethod"] == "PUT"
    assert task["httpRequest"]["body"] == payload
    assert task["dispatchDeadline"] == "30s"
    [d] = target.wait_for(1, task["name"])
    assert (d.method, d.body) == ("PUT", b'{"hello": "world"}')


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "code"),
    [
        ("POST", "/v2/{parent}/queues", b"{not json", 400, "INVALID_ARGUMENT"),
        ("POST", "/v2/{parent}/queues", b"[1, 2]", 400, "INVALID_ARGUMENT"),
        ("POST", "/v2/{parent}/queues", b'{"name": 5}', 400, "INVALID_ARGUMENT"),
        ("POST", "/v2/{parent}/queues", b'{"unknownField": 1}', 400, "INVALID_ARGUMENT"),
        ("GET", "/v2/{parent}/queues?pageSize=abc", b"", 400, "INVALID_ARGUMENT"),
        ("GET", "/v2/{parent}/queues?bogus=1", b"", 400, "INVALID_ARGUMENT"),
        ("GET", "/v2/{parent}/nothing-here", b"", 404, "NOT_FOUND"),
        ("PUT", "/v2/{parent}/queues/x", b"", 405, None),
    ],
)
def test_raw_bad_requests_get_googles_error_json(
    emu: EmulatorProcess,
    parent: str,
    method: str,
    path: str,
    payload: bytes,
    status: int,
    code: str | None,
) -> None:
    resp = requests.request(
        method,
        emu.http_url + path.format(parent=parent),
        data=payload,
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert resp.status_code == status, resp.text
    if code is not None:
        assert resp.json()["error"]["status"] == code
    assert emu.health()["status"] == "ok"
