"""firebase-admin's task-queue protocol (emulator/firebase_api.py): the SDK's own
``functions.task_queue(...).enqueue(...)`` and ``.delete(...)`` with
``CLOUD_TASKS_EMULATOR_HOST`` at the emulator's HTTP address (and at the one
address of ``--one-port``, where the official gRPC client meets it too), tasks
delivered to a real local HTTP server with the body firebase sends."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import firebase_admin
import pytest
from firebase_admin import exceptions as firebase_errors, functions
from google.api_core import exceptions

from emulator.testing import EmulatorProcess
from tests.emulator.conftest import PARENT, unique
from tests.emulator.support import Target, serve_target

PROJECT, LOCATION = PARENT.split("/")[1], PARENT.split("/")[3]
_apps = itertools.count(1)


@pytest.fixture(scope="module")
def functions_target() -> Iterator[Target]:
    """Stands in for the Firebase Functions emulator (--functions-url)."""
    with serve_target() as t:
        yield t


@pytest.fixture(scope="module")
def fb_emu(functions_target: Target) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(extra_args=("--functions-url", functions_target.base_url)) as process:
        yield process


@pytest.fixture(scope="module")
def one_port_emu() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(extra_args=("--one-port",)) as process:
        yield process


def _host(url: str) -> str:
    return url.removeprefix("http://")


@pytest.fixture
def app_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``app_at("HOST:PORT")``: a firebase-admin app whose task queues use that emulator."""
    apps: list[firebase_admin.App] = []

    def make(host: str) -> firebase_admin.App:
        monkeypatch.setenv("CLOUD_TASKS_EMULATOR_HOST", host)
        app = firebase_admin.initialize_app(
            options={"projectId": PROJECT}, name=f"emulator-test-{next(_apps)}"
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        firebase_admin.delete_app(app)


def _function_queue(emu: EmulatorProcess) -> tuple[str, str]:
    """A queue named after a function, as Firebase's deploy makes one: (function, queue)."""
    function = unique("fn")
    queue = f"{PARENT}/queues/{function}"
    emu.client("grpc").create_queue(parent=PARENT, queue={"name": queue})
    return function, queue


def test_enqueue_delivers_the_body_firebase_sends(
    fb_emu: EmulatorProcess, app_at: Any, target: Target
) -> None:
    function, queue = _function_queue(fb_emu)
    app = app_at(_host(fb_emu.http_url))
    task_id = functions.task_queue(function, app=app).enqueue(
        {"order": 42, "note": "é"},
        functions.TaskOptions(uri=target.url("/hook"), headers={"X-Tenant": "acme"}),
    )
    [delivery] = target.wait_for(1, f"{queue}/tasks/{task_id}")
    assert delivery.method == "POST"
    assert delivery.path == "/hook"
    assert json.loads(delivery.body) == {"order": 42, "note": "é"}
    assert delivery.headers["Content-Type"] == "application/json"
    assert delivery.headers["X-Tenant"] == "acme"
    assert delivery.headers["X-CloudTasks-QueueName"] == function
    assert delivery.headers["Authorization"].startswith("Bearer ey")  # the OIDC token


def test_a_task_without_uri_goes_to_the_functions_url(
    fb_emu: EmulatorProcess, app_at: Any, functions_target: Target
) -> None:
    function, queue = _function_queue(fb_emu)
    task_id = functions.task_queue(
        f"locations/{LOCATION}/functions/{function}", app=app_at(_host(fb_emu.http_url))
    ).enqueue(["a", 1])
    [delivery] = functions_target.wait_for(1, f"{queue}/tasks/{task_id}")
    assert delivery.path == f"/{PROJECT}/{LOCATION}/{function}"
    assert json.loads(delivery.body) == ["a", 1]


def test_named_task_is_seen_by_the_official_client_and_deleted(
    fb_emu: EmulatorProcess, app_at: Any, target: Target
) -> None:
    function, queue = _function_queue(fb_emu)
    tasks = functions.task_queue(function, app=app_at(_host(fb_emu.http_url)))
    options = functions.TaskOptions(
        task_id="order-42",
        schedule_delay_seconds=3600,
        dispatch_deadline_seconds=60,
        uri=target.url("/later"),
    )
    assert tasks.enqueue({"order": 42}, options) == "order-42"
    client = fb_emu.client("grpc")
    task = client.get_task(request={"name": f"{queue}/tasks/order-42", "response_view": "FULL"})
    assert task.dispatch_deadline.total_seconds() == 60
    assert json.loads(task.http_request.body) == {"order": 42}
    assert task.http_request.oidc_token.service_account_email == (
        "emulated-service-acct@email.com"  # firebase-admin's stand-in under an emulator
    )
    with pytest.raises(firebase_errors.AlreadyExistsError):
        tasks.enqueue({"order": 42}, options)
    tasks.delete("order-42")
    with pytest.raises(exceptions.NotFound):
        client.get_task(name=f"{queue}/tasks/order-42")
    with pytest.raises(firebase_errors.NotFoundError):
        tasks.delete("order-42")
    assert target.for_task(f"{queue}/tasks/order-42") == []


def test_a_missing_queue_says_how_to_create_it(fb_emu: EmulatorProcess, app_at: Any) -> None:
    tasks = functions.task_queue("no-such-function", app=app_at(_host(fb_emu.http_url)))
    with pytest.raises(firebase_errors.NotFoundError, match="--queue projects/"):
        tasks.enqueue({})


def test_without_functions_url_a_task_needs_a_uri(
    one_port_emu: EmulatorProcess, app_at: Any
) -> None:
    function, _ = _function_queue(one_port_emu)
    tasks = functions.task_queue(function, app=app_at(one_port_emu.grpc_host))
    with pytest.raises(firebase_errors.InvalidArgumentError, match="--functions-url"):
        tasks.enqueue({})


def test_one_address_for_firebase_and_the_official_client(
    one_port_emu: EmulatorProcess, app_at: Any, target: Target
) -> None:
    # CLOUD_TASKS_EMULATOR_HOST means the same address to firebase-admin (HTTP) and
    # to this project's gRPC clients.
    host = one_port_emu.grpc_host
    assert one_port_emu.environ == {"CLOUD_TASKS_EMULATOR_HOST": host}
    function, queue = _function_queue(one_port_emu)
    tasks = functions.task_queue(function, app=app_at(host))
    payload = {"big": "x" * 200_000}  # several relay chunks
    task_id = tasks.enqueue(payload, functions.TaskOptions(uri=target.url("/one")))
    [delivery] = target.wait_for(1, f"{queue}/tasks/{task_id}")
    assert json.loads(delivery.body) == payload
    kept = tasks.enqueue(
        {"n": 2}, functions.TaskOptions(schedule_delay_seconds=600, uri=target.url("/one"))
    )
    listed = one_port_emu.client("grpc").list_tasks(
        request={"parent": queue, "response_view": "FULL"}
    )
    [pending] = list(listed)
    assert pending.name == f"{queue}/tasks/{kept}"
    assert pending.http_request.body == b'{"n": 2}'
    tasks.delete(kept)
    assert list(one_port_emu.client("grpc").list_tasks(parent=queue)) == []


def test_a_bad_functions_url_is_a_one_line_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "emulator", "--functions-url", "127.0.0.1:5001"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "give http://HOST:PORT" in done.stderr.splitlines()[-1]
