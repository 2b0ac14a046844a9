"""BufferTask (emulator/buffer.py), as python-docs-samples' http_queues sample calls it:
``requests.post(".../v2beta3/QUEUE/tasks:buffer", body)`` with no Content-Type, on a
queue whose ``http_target`` says where tasks go; checked with the official client
and a real local HTTP target."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from google.cloud import tasks_v2

from emulator.testing import EmulatorProcess
from tests.emulator.conftest import PARENT, unique
from tests.emulator.support import Target


@pytest.fixture(scope="module")
def one_port() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(extra_args=("--one-port",)) as process:
        yield process


def _http_queue(emu: EmulatorProcess, target: Target, **http_target: object) -> str:
    port = int(target.base_url.rsplit(":", 1)[1])
    override = {
        "scheme": "HTTP",
        "host": "127.0.0.1",
        "port": port,
        "path_override": {"path": "/buf"},
    }
    queue = emu.client().create_queue(
        parent=PARENT,
        queue={
            "name": f"{PARENT}/queues/{unique('buffer')}",
            "http_target": {"uri_override": override, **http_target},
        },
    )
    return str(queue.name)


def test_buffer_makes_a_task_from_the_body_and_the_queues_http_target(
    one_port: EmulatorProcess, target: Target
) -> None:
    queue = _http_queue(
        one_port,
        target,
        header_overrides=[{"header": {"key": "X-From", "value": "queue"}}],
        oidc_token={"service_account_email": "buffer@p.iam.gserviceaccount.com", "audience": "w"},
    )
    answer = requests.post(
        f"{one_port.http_url}/v2beta3/{queue}/tasks:buffer",
        "something",
        headers={"Authorization": "Bearer any-token"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    task = answer.json()["task"]
    assert task["name"].startswith(f"{queue}/tasks/")
    assert task["httpRequest"]["url"] == target.url("/buf")
    [delivery] = target.wait_for(1, task["name"])
    assert delivery.method == "POST"
    assert delivery.body == b"something"
    assert delivery.headers["X-From"] == "queue"
    assert delivery.headers["Authorization"].startswith("Bearer ey")  # the queue's OIDC token


def test_buffer_with_a_task_id_keeps_the_content_type_and_names_the_task(
    one_port: EmulatorProcess, target: Target
) -> None:
    queue = _http_queue(one_port, target, http_method="PUT")
    one_port.client().pause_queue(name=queue)
    url = f"{one_port.http_url}/v2/{queue}/tasks/order-7:buffer"
    answer = requests.post(
        url, b'{"n": 7}', headers={"Content-Type": "application/json"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    task = one_port.client().get_task(
        request={"name": f"{queue}/tasks/order-7", "response_view": tasks_v2.Task.View.FULL}
    )
    assert task.http_request.http_method == tasks_v2.HttpMethod.PUT
    assert task.http_request.body == b'{"n": 7}'
    assert task.http_request.headers["Content-Type"] == "application/json"
    again = requests.post(url, b"{}", headers={"Content-Type": "application/json"}, timeout=10)
    assert again.status_code == 409  # ALREADY_EXISTS, as CreateTask with that name


def test_buffer_needs_a_queue_with_an_http_target(one_port: EmulatorProcess) -> None:
    plain = one_port.client().create_queue(
        parent=PARENT, queue={"name": f"{PARENT}/queues/{unique('plain')}"}
    )
    answer = requests.post(f"{one_port.http_url}/v2/{plain.name}/tasks:buffer", "x", timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"]["status"] == "FAILED_PRECONDITION"
    assert "httpTarget.uriOverride" in answer.json()["error"]["message"]
    missing = requests.post(
        f"{one_port.http_url}/v2/{PARENT}/queues/nope/tasks:buffer", "x", timeout=10
    )
    assert missing.status_code == 404
    # Only :buffer takes bodies of any type; CreateTask still wants JSON.
    create = requests.post(f"{one_port.http_url}/v2/{plain.name}/tasks", "x", timeout=10)
    assert create.status_code == 415
