"""``--one-port`` (emulator/oneport.py): every client on one address. The official
gRPC and REST clients of both API versions, the OIDC certs a worker fetches and the
admin endpoints, all through the port the ready line names, with real traffic."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
import requests
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2beta3
from google.cloud.tasks_v2beta3.services.cloud_tasks.transports import CloudTasksGrpcTransport

from emulator.testing import EmulatorProcess
from tests.emulator.conftest import PARENT, unique
from tests.emulator.support import Target


@pytest.fixture(scope="module")
def shared() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(extra_args=("--one-port",)) as process:
        yield process


def test_the_ready_line_names_one_address(shared: EmulatorProcess) -> None:
    assert shared.http_url == f"http://{shared.grpc_host}"


def test_every_client_on_the_one_port(shared: EmulatorProcess, target: Target) -> None:
    grpc_client, rest_client = shared.client("grpc"), shared.client("rest")
    name = f"{PARENT}/queues/{unique('one')}"
    grpc_client.create_queue(parent=PARENT, queue={"name": name})
    assert rest_client.get_queue(name=name).name == name
    channel = grpc.insecure_channel(shared.grpc_host)
    beta_grpc = tasks_v2beta3.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    beta_rest = tasks_v2beta3.CloudTasksClient(
        transport="rest",
        client_options=ClientOptions(api_endpoint=shared.http_url),
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )
    assert beta_grpc.get_queue(name=name).type_ == tasks_v2beta3.Queue.Type.PUSH
    assert beta_rest.get_queue(name=name).name == name
    task = rest_client.create_task(
        parent=name,
        task={
            "http_request": {
                "url": target.url("/one"),
                "oidc_token": {"service_account_email": "invoker@p.iam.gserviceaccount.com"},
                "body": b"x" * 600_000,  # larger than any relay chunk
            }
        },
    )
    [delivery] = target.wait_for(1, task.name)
    assert delivery.body == b"x" * 600_000
    assert "Bearer " in delivery.headers["Authorization"]
    assert requests.get(shared.certs_url, timeout=5).json()
    assert requests.get(f"{shared.http_url}/emulator/v1/health", timeout=5).json()["queues"] >= 1
    grpc_client.delete_queue(name=name)
    channel.close()


def test_many_clients_at_once(shared: EmulatorProcess) -> None:
    grpc_client, rest_client = shared.client("grpc"), shared.client("rest")
    name = f"{PARENT}/queues/{unique('busy')}"
    grpc_client.create_queue(parent=PARENT, queue={"name": name, "state": "PAUSED"})
    grpc_client.pause_queue(name=name)

    def create(i: int) -> Any:
        client = grpc_client if i % 2 else rest_client
        return client.create_task(parent=name, task={"http_request": {"url": "http://127.0.0.1:9"}})

    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(create, range(200)))
    assert len({t.name for t in created}) == 200
    assert len(list(grpc_client.list_tasks(parent=name))) == 200
    grpc_client.delete_queue(name=name)


def test_a_preface_sent_byte_by_byte_and_garbage(shared: EmulatorProcess) -> None:
    host, port = shared.grpc_host.rsplit(":", 1)
    # An HTTP/1.1 request split into tiny writes still reaches the HTTP server.
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        for byte in b"GET /emulator/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n":
            raw.sendall(bytes([byte]))
        assert raw.recv(12) == b"HTTP/1.1 200"
    # A connection that sends half a preface and closes, and one that sends junk,
    # leave the port serving.
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(b"PRI * HT")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(b"\x00\x01\x02 not a protocol\r\n\r\n")
        raw.recv(100)
    time.sleep(0.05)
    assert shared.health()["status"] == "ok"


def test_restart_keeps_the_one_port(tmp_path: Any) -> None:
    with EmulatorProcess(tmp_path / "d.db", extra_args=("--one-port",)) as emu:
        before = emu.grpc_host
        name = f"{PARENT}/queues/{unique('keep')}"
        emu.client().create_queue(parent=PARENT, queue={"name": name})
        emu.restart()
        assert emu.grpc_host == before
        assert emu.client("rest").get_queue(name=name).name == name


def test_a_busy_one_port_is_a_one_line_error() -> None:
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "emulator", "--one-port", "--port", str(port)],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode != 0
    [line] = out.stderr.strip().splitlines()
    assert line.startswith(
        f"cloud-tasks-emulator: cannot bind the --one-port port 127.0.0.1:{port}"
    )
    assert line.endswith("pass --port 0 to pick a free port")
