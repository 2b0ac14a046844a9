"""Other people's code, unchanged, against the emulator: emulator/redirect.py,
emulator/redirect.cjs and the OAuth token endpoint (emulator/oauth_token.py).

Each test reproduces what a public suite does (scripts/run_sample_suites.py
runs the suites themselves): clients built with no arguments, a
service-account key file whose ``token_uri`` is Google's, firebase-admin in
production mode. The redirect patches process-wide, so the client code runs in
a child process, as it does under ``pytest -p emulator.redirect``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google.auth.transport.requests
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.oauth2 import id_token, service_account

from emulator import redirect
from emulator.testing import EmulatorProcess
from tests.emulator.support import Target
from tests.emulator.test_emulator_node_client import NODE_DIR, _install_node_packages

REPO = Path(__file__).resolve().parents[2]
PROJECT = "suite-project"
PARENT = f"projects/{PROJECT}/locations/us-central1"
EMAIL = f"runner@{PROJECT}.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def one_port() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(extra_args=("--one-port",)) as process:
        yield process


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A key file shaped like Google's (token_uri Google's), with a key made here."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = tmp_path_factory.mktemp("creds") / "key.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": EMAIL,
                "client_id": "1",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    return path


def _run_python(code: str, emu: EmulatorProcess, **env: str) -> dict[str, Any]:
    """Run ``code`` with the redirect installed (as the pytest plugin does); its JSON stdout."""
    full_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        redirect.REDIRECT_ENV: emu.grpc_host,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        **env,
    }
    full_env.pop("CLOUD_TASKS_EMULATOR_HOST", None)
    prelude = "import emulator.redirect, json\nemulator.redirect.install()\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_clients_built_without_arguments_use_the_emulator(one_port: EmulatorProcess) -> None:
    # cloud_tasks/snippets and cloud_tasks/http_queues (v2beta3, uri_override), gRPC and REST;
    # task URLs on loopback so that nothing is delivered off the machine.
    seen = _run_python(
        f"""
        from google.api_core import exceptions
        from google.cloud import tasks_v2, tasks_v2beta3
        client = tasks_v2.CloudTasksClient()
        queue = client.create_queue(parent="{PARENT}", queue={{"name": "{PARENT}/queues/snip"}})
        task = client.create_task(parent=queue.name, task={{"http_request": {{
            "url": "http://127.0.0.1:9/task_handler",
            "oidc_token": {{"service_account_email": "{EMAIL}"}}}}}})
        rest = tasks_v2.CloudTasksClient(transport="rest")
        names = [q.name for q in rest.list_queues(parent="{PARENT}")]
        client.delete_queue(name=queue.name)
        try:
            client.delete_queue(name=queue.name)
            missing = False
        except exceptions.NotFound:
            missing = True
        beta = tasks_v2beta3.CloudTasksClient()
        q = beta.create_queue(parent="{PARENT}", queue={{"name": "{PARENT}/queues/http",
            "http_target": {{"uri_override": {{"host": "example.com",
                                               "uri_override_enforce_mode": 2}}}}}})
        same = beta.get_queue(name=q.name) == q
        email = task.http_request.oidc_token.service_account_email
        import asyncio
        async def listed_async():
            pager = await tasks_v2.CloudTasksAsyncClient().list_queues(parent="{PARENT}")
            return [queue.name async for queue in pager]
        print(json.dumps({{"task": task.name, "email": email,
                          "listed": names, "missing": missing, "same": same,
                          "async": asyncio.run(listed_async()),
                          "host": q.http_target.uri_override.host}}))
        """,
        one_port,
    )
    assert seen["task"].startswith(f"{PARENT}/queues/snip/tasks/")
    assert seen["email"] == EMAIL
    assert f"{PARENT}/queues/snip" in seen["listed"]
    assert seen["missing"] is True
    assert seen["same"] is True
    assert seen["host"] == "example.com"
    assert f"{PARENT}/queues/http" in seen["async"]  # the asyncio transport too
    # The tasks really are in the emulator, seen by a client that was not redirected.
    beta_queue = one_port.client().get_queue(name=f"{PARENT}/queues/http")
    assert beta_queue.http_target.uri_override.host == "example.com"


def _pytest_with_the_plugin(folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """pytest run in ``folder`` as a suite would be, with only ``-p emulator.redirect`` added."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "emulator.redirect", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=folder,
        check=False,
    )


def test_pytest_plugin_redirects_before_test_modules_build_clients(
    one_port: EmulatorProcess, tmp_path: Path
) -> None:
    # As python-tasks' system test: a client built inside the test, PROJECT_ID from the env.
    (tmp_path / "test_listing.py").write_text(
        textwrap.dedent(
            f"""
            from google.cloud import tasks_v2
            CLIENT = tasks_v2.CloudTasksClient()  # at import, as samples do

            def test_list_queues():
                CLIENT.create_queue(parent="{PARENT}", queue={{"name": "{PARENT}/queues/plugin"}})
                listed = [q.name for q in CLIENT.list_queues(parent="{PARENT}")]
                assert "{PARENT}/queues/plugin" in listed
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), redirect.REDIRECT_ENV: one_port.grpc_host}
    done = _pytest_with_the_plugin(tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert f"redirected to the emulator at {one_port.grpc_host}" in done.stdout


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (None, "neither CLOUD_TASKS_EMULATOR_REDIRECT nor CLOUD_TASKS_EMULATOR_HOST is set"),
        ("http://127.0.0.1:8123", "must be HOST:PORT of an emulator started with --one-port"),
    ],
)
def test_pytest_plugin_without_a_usable_address_stops_before_any_test(
    tmp_path: Path, value: str | None, words: str
) -> None:
    """Fail closed: a suite meant for the emulator never runs against Google instead."""
    (tmp_path / "test_never.py").write_text("def test_never():\n    raise SystemExit(99)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CLOUD_TASKS_EMULATOR_HOST", None)
    env.pop(redirect.REDIRECT_ENV, None)
    if value is not None:
        env[redirect.REDIRECT_ENV] = value
    done = _pytest_with_the_plugin(tmp_path, env)
    assert done.returncode == 4, done.stdout + done.stderr  # pytest's usage error
    assert "ERROR: -p emulator.redirect: " in done.stderr
    assert words in done.stderr
    assert "INTERNALERROR" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_node_preload_without_an_address_refuses_to_run() -> None:
    node = shutil.which("node")
    assert node, "Node.js is required for this test (apt-get install nodejs)"
    env = {**os.environ, "NODE_OPTIONS": f"--require {REPO / 'emulator' / 'redirect.cjs'}"}
    env.pop("CLOUD_TASKS_EMULATOR_HOST", None)
    env.pop(redirect.REDIRECT_ENV, None)
    done = subprocess.run(
        [node, "-e", "console.log('ran')"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode != 0
    assert done.stdout == ""
    assert (
        "neither CLOUD_TASKS_EMULATOR_REDIRECT nor CLOUD_TASKS_EMULATOR_HOST is set" in done.stderr
    )


def test_firebase_admin_production_mode_enqueues_through_googles_api(
    one_port: EmulatorProcess, key_file: Path, target: Target
) -> None:
    # firebase-admin's integration/test_functions.py with --cert: no CLOUD_TASKS_EMULATOR_HOST,
    # a service-account key refreshed at Google's token_uri, then the /v2/ REST API.
    queue = f"{PARENT}/queues/resize"
    one_port.client().create_queue(parent=PARENT, queue={"name": queue})
    url = target.url("/resize")
    seen = _run_python(
        f"""
        import firebase_admin
        from firebase_admin import credentials, exceptions, functions
        app = firebase_admin.initialize_app(credentials.Certificate("{key_file}"))
        queue = functions.task_queue("resize", app=app)
        task_id = queue.enqueue({{"image": "a.png"}}, functions.TaskOptions(uri="{url}"))
        delayed = functions.TaskOptions(schedule_delay_seconds=60, uri="{url}")
        later = queue.enqueue({{"image": "b.png"}}, delayed)
        queue.delete(later)
        try:
            queue.delete(later)
            gone = False
        except exceptions.NotFoundError:
            gone = True
        print(json.dumps({{"task_id": task_id, "gone": gone}}))
        """,
        one_port,
    )
    assert seen["gone"] is True
    [delivery] = target.wait_for(1, f"{queue}/tasks/{seen['task_id']}")
    assert json.loads(delivery.body) == {"image": "a.png"}
    token = delivery.headers["Authorization"].removeprefix("Bearer ")
    claims = id_token.verify_token(
        token, google.auth.transport.requests.Request(), audience=url, certs_url=one_port.certs_url
    )
    assert claims["email"] == EMAIL  # the key file's account, as Google signs it


def test_token_endpoint_answers_service_account_refreshes(
    one_port: EmulatorProcess, key_file: Path
) -> None:
    token_uri = f"{one_port.http_url}/token"
    creds = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
        str(key_file), scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    creds._token_uri = token_uri
    creds.refresh(google.auth.transport.requests.Request())
    assert creds.token
    assert creds.token.startswith("emulator-")
    assert creds.expiry is not None

    audience = "https://worker.example/tasks"
    id_creds = service_account.IDTokenCredentials.from_service_account_file(  # type: ignore[no-untyped-call]
        str(key_file), target_audience=audience
    )
    id_creds._token_uri = token_uri
    id_creds.refresh(google.auth.transport.requests.Request())
    claims = id_token.verify_token(
        id_creds.token,
        google.auth.transport.requests.Request(),
        audience=audience,
        certs_url=one_port.certs_url,
    )
    assert claims["email"] == EMAIL


def test_token_endpoint_refuses_what_it_cannot_answer(one_port: EmulatorProcess) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    bad_grant = requests.post(
        f"{one_port.http_url}/token",
        data="grant_type=password&username=u",
        headers=form,
        timeout=10,
    )
    assert bad_grant.status_code == 400
    assert bad_grant.json()["error"] == "unsupported_grant_type"
    not_jwt = requests.post(
        f"{one_port.http_url}/token",
        data="grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=abc",
        headers=form,
        timeout=10,
    )
    assert not_jwt.status_code == 400
    assert "not a JWT" in not_jwt.json()["error_description"]
    # Forms are taken at /token only: the API still refuses them (emulator/http_guard.py).
    api = requests.post(
        f"{one_port.http_url}/v2/{PARENT}/queues", data="a=b", headers=form, timeout=10
    )
    assert api.status_code == 415


def test_bad_redirect_address_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(redirect.REDIRECT_ENV, "http://127.0.0.1:8123")
    with pytest.raises(
        ValueError, match="must be HOST:PORT of an emulator started with --one-port"
    ):
        redirect.target()


def test_rewrite_url_changes_only_googles_origins() -> None:
    at = "127.0.0.1:9"
    assert redirect.rewrite_url("https://cloudtasks.googleapis.com/v2/x:buffer", at) == (
        "http://127.0.0.1:9/v2/x:buffer"
    )
    assert redirect.rewrite_url("https://oauth2.googleapis.com:443/token", at) == (
        "http://127.0.0.1:9/token"
    )
    assert redirect.rewrite_url("https://cloudtasks.googleapis.com.evil/x", at) == (
        "https://cloudtasks.googleapis.com.evil/x"
    )
    assert redirect.rewrite_url("https://example.com/", at) == "https://example.com/"


def test_node_preload_redirects_clients_built_without_options(one_port: EmulatorProcess) -> None:
    # nodejs-docs-samples cloud-tasks/snippets: `new CloudTasksClient()` in a child `node` process.
    node = shutil.which("node")
    assert node, "Node.js is required for this test (apt-get install nodejs)"
    _install_node_packages()
    script = f"""
        const {{CloudTasksClient}} = require('@google-cloud/tasks');
        (async () => {{
          const client = new CloudTasksClient();
          const [queue] = await client.createQueue({{
            parent: '{PARENT}', queue: {{name: '{PARENT}/queues/node-redirect'}}}});
          const [task] = await client.createTask({{parent: queue.name, task: {{httpRequest: {{
            url: 'http://127.0.0.1:9/x', httpMethod: 'POST'}}}}}});
          const project = await client.getProjectId();
          console.log(JSON.stringify({{queue: queue.name, task: task.name, project}}));
        }})().catch(e => {{ console.error(e.message); process.exit(1); }});
    """
    env = {
        **os.environ,
        "NODE_OPTIONS": f"--require {REPO / 'emulator' / 'redirect.cjs'}",
        redirect.REDIRECT_ENV: one_port.grpc_host,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "METADATA_SERVER_DETECTION": "none",
    }
    env.pop("CLOUD_TASKS_EMULATOR_HOST", None)
    done = subprocess.run(
        [node, "-e", script],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["project"] == PROJECT
    task = one_port.client().get_task(name=seen["task"])
    assert task.http_request.url == "http://127.0.0.1:9/x"
    with pytest.raises(exceptions.AlreadyExists):
        one_port.client().create_queue(parent=PARENT, queue={"name": seen["queue"]})
    assert isinstance(one_port.client(), tasks_v2.CloudTasksClient)
