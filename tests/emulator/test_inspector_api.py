"""The inspector's JSON and page over HTTP (emulator/inspector.py), and its action guard.

A real emulator process with ``--inspector-actions`` and one without; queues and
tasks are made with the official client, read back through the inspector's JSON,
and every action is tried without the token, with a wrong one, from another
origin, and read-only, each checked with GetQueue to have changed nothing.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from google.cloud import tasks_v2

from emulator.inspector import API_PREFIX, CONTENT_SECURITY_POLICY, TOKEN_HEADER
from emulator.testing import EmulatorProcess
from tests.emulator.support import Target, eventually

pytestmark = pytest.mark.integration

PAUSED = tasks_v2.Queue.State.PAUSED
RUNNING = tasks_v2.Queue.State.RUNNING


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(extra_args=("--inspector-actions",)) as process:
        yield process


@pytest.fixture(scope="module")
def http(emu: EmulatorProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.http_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def token(http: httpx.Client) -> str:
    session = http.get(f"{API_PREFIX}/session").json()
    assert session["actions"] is True
    assert isinstance(session["token"], str)
    assert len(session["token"]) >= 32
    return session["token"]


def _get(http: httpx.Client, path: str) -> Any:
    response = http.get(f"{API_PREFIX}/{path}")
    assert response.status_code == 200, response.text
    return response.json()


def _queue_row(http: httpx.Client, name: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = [q for q in _get(http, "queues")["queues"] if q["name"] == name]
    assert len(rows) == 1, rows
    return rows[0]


def _own(emu: EmulatorProcess, token: str) -> dict[str, str]:
    """What the inspector's page sends with an action."""
    return {TOKEN_HEADER: token, "Origin": emu.http_url, "Sec-Fetch-Site": "same-origin"}


# -- the page ---------------------------------------------------------------------------


def test_the_page_and_its_files_carry_a_strict_policy(http: httpx.Client) -> None:
    home = http.get("/")
    assert home.status_code == 302
    assert home.headers["location"] == "/inspector"
    page = http.get("/inspector")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert page.headers["x-content-type-options"] == "nosniff"
    # No inline script: every <script> names a file of this origin.
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, flags=re.DOTALL)
    assert scripts == [(' src="/inspector/inspector.js" defer', "")]
    assert "style=" not in page.text
    script = http.get("/inspector/inspector.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "textContent" in script.text
    assert "innerHTML" not in script.text
    assert http.get("/inspector/inspector.css").headers["content-type"].startswith("text/css")
    missing = http.get("/inspector/secrets.txt")
    assert missing.status_code == 404
    assert "No inspector file" in missing.json()["error"]["message"]


# -- reading ----------------------------------------------------------------------------


def test_queue_rows_show_state_limits_depth_and_failures(
    http: httpx.Client, client: Any, make_queue: Callable[..., str], target: Target
) -> None:
    quiet = make_queue(rate_limits={"max_dispatches_per_second": 7, "max_concurrent_dispatches": 3})
    client.pause_queue(name=quiet)
    for _ in range(2):
        client.create_task(parent=quiet, task={"http_request": {"url": target.url("/ok")}})
    row = _queue_row(http, quiet)
    project, location, queue_id = quiet.split("/")[1::2]
    assert row["project"] == project
    assert row["location"] == location
    assert row["id"] == queue_id
    assert row["state"] == "PAUSED"
    assert row["max_dispatches_per_second"] == 7
    assert row["max_concurrent_dispatches"] == 3
    assert row["depth"] == 2
    assert row["dropped"] == 0

    failing = make_queue(retry_config={"max_attempts": 2, "min_backoff": "0.1s"})
    client.create_task(parent=failing, task={"http_request": {"url": target.url("/status/500")}})
    assert eventually(lambda: _queue_row(http, failing)["dropped"] == 1)
    row = _queue_row(http, failing)
    assert row["depth"] == 0
    assert row["failures"] == 2
    assert sum(row["attempts"].values()) == 2
    assert row["max_attempts"] == 2


def test_tasks_and_one_task_decoded(
    http: httpx.Client, client: Any, queue_name: str, target: Target
) -> None:
    client.pause_queue(name=queue_name)  # nothing is delivered: the tasks stay as made
    later = {"seconds": int(time.time()) + 3600}
    document = {"to": "ada@example.com", "n": [1, 2]}
    made: dict[str, dict[str, Any]] = {
        "json": {"body": json.dumps(document).encode(), "headers": {"Content-Type": "a/json"}},
        "text": {"body": "<b>héllo</b>".encode()},
        "binary": {"body": b"\xff\xfe\x00\x01"},
        "empty": {"http_method": "GET"},
    }
    for task_id, request in made.items():
        task: dict[str, Any] = {
            "name": f"{queue_name}/tasks/{task_id}",
            "http_request": {
                "url": target.url(f"/{task_id}"),
                "oidc_token": {"service_account_email": "sa@p.iam.gserviceaccount.com"},
                **request,
            },
        }
        if task_id != "json":
            task["schedule_time"] = later
        client.create_task(parent=queue_name, task=task)
    listing = _get(http, f"{queue_name}/tasks")
    assert listing["total"] == 4
    assert listing["state"] == "PAUSED"
    # The earliest scheduled first: "json" is due now, the others in an hour.
    assert listing["tasks"][0]["id"] == "json"
    assert {t["id"] for t in listing["tasks"]} == set(made)
    row = listing["tasks"][0]
    assert row["request"] == f"POST {target.url('/json')}"
    assert row["dispatch_count"] == 0
    assert row["last_status"] is None

    detail = _get(http, f"{queue_name}/tasks/json")
    body = detail["target"]["body"]
    assert body["kind"] == "json"
    assert json.loads(body["text"]) == document
    assert body["text"] == json.dumps(document, indent=2)
    assert detail["target"]["headers"] == [["Content-Type", "a/json"]]
    assert detail["target"]["oidc_token"]["service_account_email"] == "sa@p.iam.gserviceaccount.com"
    assert detail["target"]["method"] == "POST"
    assert detail["dispatch_deadline"] == "600s"
    assert detail["history"] == []
    assert detail["last_attempt"] is None

    text = _get(http, f"{queue_name}/tasks/text")["target"]["body"]
    assert (text["kind"], text["text"], text["note"]) == ("text", "<b>héllo</b>", "")
    binary = _get(http, f"{queue_name}/tasks/binary")["target"]["body"]
    assert binary["kind"] == "base64"
    assert base64.b64decode(binary["text"]) == b"\xff\xfe\x00\x01"
    assert binary["note"] == "not printable UTF-8 text: shown as base64"
    empty = _get(http, f"{queue_name}/tasks/empty")["target"]
    assert (empty["method"], empty["body"]["kind"]) == ("GET", "empty")

    missing = http.get(f"{API_PREFIX}/{queue_name}/tasks/nope")
    assert missing.status_code == 404
    assert "does not exist" in missing.json()["error"]["message"]
    nonsense = http.get(f"{API_PREFIX}/projects/p/whatever")
    assert nonsense.status_code == 404
    assert "No inspector resource" in nonsense.json()["error"]["message"]


def test_attempt_history_of_a_retried_task(
    http: httpx.Client, client: Any, make_queue: Callable[..., str], target: Target
) -> None:
    # Backoffs are whole seconds (queue.proto): an attempt a second, for a thousand seconds.
    queue = make_queue(retry_config={"min_backoff": "1s", "max_backoff": "1s"})
    task = client.create_task(
        parent=queue, task={"http_request": {"url": target.url("/flaky/1000")}}
    )
    assert eventually(lambda: len(_get(http, task.name)["history"]) >= 2, timeout=15)
    client.pause_queue(name=queue)
    detail = _get(http, task.name)
    history = detail["history"]
    assert all(a["http_status"] == 500 for a in history)
    assert all(a["code"] == "INTERNAL" and a["message"].startswith("HTTP 500") for a in history)
    assert all(a["response_time"] >= a["dispatch_time"] for a in history)
    assert [a["dispatch_time"] for a in history] == sorted(a["dispatch_time"] for a in history)
    assert detail["first_attempt"]["dispatch_time"] == history[0]["dispatch_time"]
    assert detail["last_attempt"]["status"]["code"] == "INTERNAL"
    assert detail["response_count"] >= len(history)


# -- actions and their guard ------------------------------------------------------------


def _state(client: Any, name: str) -> int:
    return int(client.get_queue(name=name).state)


def test_actions_without_the_token_or_from_elsewhere_are_refused(
    emu: EmulatorProcess, http: httpx.Client, client: Any, queue_name: str, token: str
) -> None:
    pause = f"{API_PREFIX}/{queue_name}:pause"
    refused = {
        "no token": {"Origin": emu.http_url},
        "wrong token": {TOKEN_HEADER: token[:-1] + ("A" if token[-1] != "A" else "B")},
        "another loopback origin": {**_own(emu, token), "Origin": "http://127.0.0.1:1"},
        "a foreign origin": {**_own(emu, token), "Origin": "http://evil.example"},
        "cross-site fetch": {**_own(emu, token), "Sec-Fetch-Site": "cross-site"},
        "same-site fetch": {**_own(emu, token), "Sec-Fetch-Site": "same-site"},
        "a rebound host name": {**_own(emu, token), "Host": "evil.example"},
    }
    for why, headers in refused.items():
        response = http.post(pause, headers=headers)
        assert response.status_code == 403, why
        error = response.json()["error"]
        assert error["status"] == "PERMISSION_DENIED", why
        assert error["message"], why
        assert _state(client, queue_name) == RUNNING, why
    messages = {
        why: http.post(pause, headers=h).json()["error"]["message"] for why, h in refused.items()
    }
    assert TOKEN_HEADER in messages["no token"]
    assert "only its own pages" in messages["another loopback origin"]  # http_guard.py first
    assert "cross-site" in messages["cross-site fetch"]
    # GET never acts.
    assert http.get(pause, headers=_own(emu, token)).status_code == 404
    assert _state(client, queue_name) == RUNNING
    # The token is not for other pages either.
    elsewhere = http.get(f"{API_PREFIX}/session", headers={"Sec-Fetch-Site": "cross-site"})
    assert elsewhere.status_code == 403
    assert token not in elsewhere.text


def test_actions_with_the_token_pause_resume_purge_and_run(
    emu: EmulatorProcess,
    http: httpx.Client,
    client: Any,
    queue_name: str,
    token: str,
    target: Target,
) -> None:
    paused = http.post(f"{API_PREFIX}/{queue_name}:pause", headers=_own(emu, token))
    assert paused.status_code == 200, paused.text
    assert paused.json()["state"] == "PAUSED"
    assert _state(client, queue_name) == PAUSED  # the official client's GetQueue agrees

    # A non-browser client (no Origin, no Sec-Fetch-Site) with the token may act too.
    resumed = http.post(f"{API_PREFIX}/{queue_name}:resume", headers={TOKEN_HEADER: token})
    assert resumed.status_code == 200, resumed.text
    assert _state(client, queue_name) == RUNNING

    later = {"seconds": int(time.time()) + 3600}
    task = client.create_task(
        parent=queue_name,
        task={"http_request": {"url": target.url("/ran")}, "schedule_time": later},
    )
    ran = http.post(f"{API_PREFIX}/{task.name}:run", headers=_own(emu, token))
    assert ran.status_code == 200, ran.text
    assert ran.json()["dispatch_count"] == 1
    assert len(target.wait_for(1, task.name)) == 1

    for _ in range(3):
        client.create_task(
            parent=queue_name,
            task={"http_request": {"url": target.url("/later")}, "schedule_time": later},
        )
    purged = http.post(f"{API_PREFIX}/{queue_name}:purge", headers=_own(emu, token))
    assert purged.status_code == 200, purged.text
    assert list(client.list_tasks(parent=queue_name)) == []

    unknown = http.post(f"{API_PREFIX}/{queue_name}:explode", headers=_own(emu, token))
    assert unknown.status_code == 404
    assert ":pause, :resume, :purge" in unknown.json()["error"]["message"]
    gone = http.post(f"{API_PREFIX}/{queue_name}-gone:pause", headers=_own(emu, token))
    assert gone.status_code == 404


def test_a_read_only_inspector_refuses_every_action(target: Target) -> None:
    with EmulatorProcess() as emu, httpx.Client(base_url=emu.http_url) as http:
        session = http.get(f"{API_PREFIX}/session").json()
        assert session == {"actions": False, "token": None}
        client = emu.client()
        parent = "projects/ro/locations/l"
        queue = f"{parent}/queues/q"
        client.create_queue(parent=parent, queue={"name": queue})
        task = client.create_task(
            parent=queue,
            task={
                "http_request": {"url": target.url("/x")},
                "schedule_time": {"seconds": int(time.time()) + 3600},
            },
        )
        for action in (f"{queue}:pause", f"{queue}:purge", f"{task.name}:run"):
            response = http.post(
                f"{API_PREFIX}/{action}", headers={TOKEN_HEADER: "anything", "Origin": emu.http_url}
            )
            assert response.status_code == 403, action
            assert "--inspector-actions" in response.json()["error"]["message"]
        assert _state(client, queue) == RUNNING
        assert client.get_task(name=task.name).dispatch_count == 0
        # Reading works as ever.
        assert _queue_row(http, queue)["depth"] == 1


def test_the_inspector_on_one_port() -> None:
    with EmulatorProcess(extra_args=("--one-port",)) as emu, httpx.Client() as http:
        assert emu.http_url.endswith(emu.grpc_host)
        client = emu.client()
        parent = "projects/one/locations/l"
        client.create_queue(parent=parent, queue={"name": f"{parent}/queues/q"})
        page = http.get(f"{emu.http_url}/inspector")
        assert page.status_code == 200
        assert "inspector.js" in page.text
        queues = http.get(f"{emu.http_url}{API_PREFIX}/queues").json()["queues"]
        assert [q["id"] for q in queues] == ["q"]


def test_the_queue_listing_carries_the_emulators_own_clock() -> None:
    """Under --manual-clock the browser's time says nothing about what is due."""
    with (
        EmulatorProcess(extra_args=("--manual-clock",)) as emu,
        httpx.Client(base_url=emu.http_url, timeout=10) as http,
    ):
        before = http.get(f"{API_PREFIX}/queues").json()["clock"]
        assert before["manual"] is True
        advanced = http.post("/emulator/v1/clock:advance", json={"seconds": "1h"})
        assert advanced.status_code == 200, advanced.text
        after = http.get(f"{API_PREFIX}/queues").json()["clock"]

    def seconds(iso: str) -> float:
        from datetime import datetime

        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()

    assert seconds(after["now"]) - seconds(before["now"]) == pytest.approx(3600, abs=1)
