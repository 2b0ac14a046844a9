"""Several queues: the worker logs each task's queue key and dead-letters a task that
arrived on a queue its type's route does not name.

`TASKS_QUEUES` / `TASKS_ROUTES` are read and checked at start (malformed = the worker
refuses to start); the check runs in the in-process app, in `python -m service`, and
behind the real emulator, whose deliveries carry the real `X-CloudTasks-QueueName`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core.exceptions import NotFound
from google.cloud import tasks_v2

from contract.names import WORKER_ENV_QUEUES, WORKER_ENV_ROUTES
from emulator.testing import EmulatorProcess
from service.config import ConfigError, Settings
from service.queues import QueueRoutingError, parse_queue_routing
from tests.service.conftest import FIXTURE_MODULE, AppWorker, app_worker, new_id
from tests.service.support import REPO_ROOT, LocalIssuer, WorkerProcess, iter_json_lines

QUEUES = {"default": "tasks-default", "email": "tasks-email", "reports": "tasks-reports"}
ROUTES = {"record": "email", "strict": "reports"}
ROUTING_ENV = {WORKER_ENV_QUEUES: json.dumps(QUEUES), WORKER_ENV_ROUTES: json.dumps(ROUTES)}


class TestParsing:
    def test_absent_is_a_single_queue_stack_without_a_check(self) -> None:
        assert parse_queue_routing(None, None) is None
        assert Settings.from_env({"HOST": "127.0.0.1"}).queue_routing is None

    def test_both_are_read(self) -> None:
        routing = Settings.from_env({"HOST": "127.0.0.1", **ROUTING_ENV}).queue_routing
        assert routing is not None
        assert dict(routing.queue_ids) == QUEUES
        assert dict(routing.routes) == ROUTES
        assert routing.key_of("tasks-email") == "email"
        assert routing.key_of("tasks-other") is None

    def test_queues_without_routes_send_every_type_to_default(self) -> None:
        routing = parse_queue_routing(json.dumps(QUEUES), None)
        assert routing is not None
        assert routing.misroute("record", "tasks-default") is None
        assert routing.misroute("record", "tasks-email") is not None

    @pytest.mark.parametrize(
        ("queues", "routes", "message"),
        [
            ("{", None, "TASKS_QUEUES is not valid JSON (Expecting property name"),
            ("", None, "TASKS_QUEUES is set but empty"),
            ("[]", None, "TASKS_QUEUES must be a JSON object, got list"),
            (json.dumps(QUEUES), "{'record': 1}", "TASKS_ROUTES is not valid JSON"),
            (json.dumps(QUEUES), " ", "TASKS_ROUTES is set but empty"),
            (None, json.dumps(ROUTES), "TASKS_ROUTES is set but TASKS_QUEUES is not"),
            ('{"email": "tasks-email"}', None, "TASKS_QUEUES has no 'default' queue"),
            ('{"default": "a", "Email": "b"}', None, "TASKS_QUEUES: queue key 'Email' must be"),
            ('{"default": "a/b"}', None, "TASKS_QUEUES.default must be a queue id"),
            ('{"default": 7}', None, "TASKS_QUEUES.default must be a queue id"),
            ('{"default": "a", "email": "a"}', None, "queue id 'a' is given for two keys"),
            (
                json.dumps(QUEUES),
                '{"record": "fax"}',
                "TASKS_ROUTES.record names queue 'fax', which TASKS_QUEUES lacks "
                "(default, email, reports)",
            ),
            (json.dumps(QUEUES), '{"a/b": "email"}', "TASKS_ROUTES: 'a/b' is not a valid task"),
        ],
    )
    def test_bad_values_fail_closed_naming_the_variable(
        self, queues: str | None, routes: str | None, message: str
    ) -> None:
        with pytest.raises(QueueRoutingError) as caught:
            parse_queue_routing(queues, routes)
        assert message in str(caught.value)
        env = {"HOST": "127.0.0.1"}
        env.update({WORKER_ENV_QUEUES: queues} if queues is not None else {})
        env.update({WORKER_ENV_ROUTES: routes} if routes is not None else {})
        with pytest.raises(ConfigError, match="TASKS_"):
            Settings.from_env(env)

    def test_the_process_refuses_to_start_with_one_line(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKS_")}
        env.update({"HOST": "127.0.0.1", "PORT": "0", WORKER_ENV_QUEUES: "{not json"})
        done = subprocess.run(
            [sys.executable, "-m", "service"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2
        [line] = [json.loads(raw) for raw in done.stderr.strip().splitlines()]
        assert line["severity"] == "CRITICAL"
        assert "TASKS_QUEUES is not valid JSON" in line["message"]


def cloud_tasks_headers(queue_id: str | None, task_name: str | None = None) -> dict[str, str]:
    headers = {"X-CloudTasks-TaskName": task_name or new_id()}
    if queue_id is not None:
        headers["X-CloudTasks-QueueName"] = queue_id
    return headers


@pytest.fixture(scope="module")
def routed(issuer: LocalIssuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppWorker]:
    with app_worker(tmp_path_factory.mktemp("routed"), issuer, ROUTING_ENV) as running:
        yield running


def outcome_line(worker: AppWorker, task_name: str) -> dict[str, Any]:
    return worker.wait_for_log(
        lambda e: e.get("task_name") == task_name and "outcome" in e and "latency_ms" in e
    )


class TestInProcess:
    def test_a_task_on_its_routed_queue_runs_and_logs_the_key(self, routed: AppWorker) -> None:
        task_id, name = new_id(), new_id()
        answer = routed.post(
            "record", {"id": task_id}, headers=cloud_tasks_headers(QUEUES["email"], name)
        )
        assert answer.json()["status"] == "ok"
        assert len(routed.runs(task_id)) == 1
        line = outcome_line(routed, name)
        assert (line["queue_key"], line["queue_name"], line["outcome"]) == (
            "email",
            "tasks-email",
            "ok",
        )

    def test_an_unrouted_type_belongs_on_default(self, routed: AppWorker) -> None:
        task_id = new_id()
        ok = routed.post(
            "record_sync", {"id": task_id}, headers=cloud_tasks_headers("tasks-default")
        )
        assert ok.json()["status"] == "ok"
        wrong = routed.post(
            "record_sync", {"id": task_id}, headers=cloud_tasks_headers("tasks-email")
        )
        assert (wrong.status_code, wrong.json()["status"]) == (200, "dead_letter")
        assert len(routed.runs(task_id)) == 1

    def test_a_misrouted_task_is_dead_lettered_and_acknowledged(self, routed: AppWorker) -> None:
        task_id, name = new_id(), new_id()
        headers = cloud_tasks_headers(QUEUES["default"], name)
        answer = routed.post("record", {"id": task_id}, headers=headers)
        assert answer.status_code == 200  # acknowledged: Cloud Tasks does not retry it
        reason = (
            "misrouted task: type 'record' arrived on queue 'default' (queue tasks-default); "
            "its route names queue 'email' (queue tasks-email)"
        )
        assert answer.json()["status"] == "dead_letter"
        assert answer.json()["reason"].startswith(reason)
        assert routed.runs(task_id) == []  # the handler never ran
        letter = routed.wait_for_log(
            lambda e: e.get("logger") == "service.deadletter" and e.get("task_name") == name
        )
        assert letter["severity"] == "ERROR"
        assert letter["queue_key"] == "default"
        assert letter["dead_letter"]["reason"].startswith(reason)
        assert letter["dead_letter"]["queue_name"] == "tasks-default"
        line = outcome_line(routed, name)
        assert (line["outcome"], line["severity"], line["queue_key"]) == (
            "dead_letter",
            "WARNING",
            "default",
        )
        # A redelivery of the same task is a duplicate: settled, still not run.
        again = routed.post("record", {"id": task_id}, headers=headers)
        assert again.json() == {"status": "duplicate", "previous_outcome": "dead_letter"}
        assert routed.runs(task_id) == []

    def test_smoke_tasks_are_accepted_on_every_queue_of_the_stack(self, routed: AppWorker) -> None:
        for key, queue_id in QUEUES.items():
            name = new_id()
            answer = routed.post(
                "smoke", {"smoke": True}, headers=cloud_tasks_headers(queue_id, name)
            )
            assert answer.json()["status"] == "ok", key
            assert outcome_line(routed, name)["queue_key"] == key
        stray = routed.post("smoke", {}, headers=cloud_tasks_headers("tasks-elsewhere"))
        assert stray.json()["status"] == "dead_letter"

    @pytest.mark.parametrize(
        ("queue_id", "says"),
        [
            ("tasks-elsewhere", "arrived on queue 'tasks-elsewhere', not a queue of this stack"),
            (None, "arrived without X-CloudTasks-QueueName"),
        ],
    )
    def test_an_unknown_or_missing_queue_is_refused(
        self, routed: AppWorker, queue_id: str | None, says: str
    ) -> None:
        task_id, name = new_id(), new_id()
        answer = routed.post("strict", {"n": 1}, headers=cloud_tasks_headers(queue_id, name))
        assert answer.json()["status"] == "dead_letter"
        assert says in answer.json()["reason"]
        assert "its route names queue 'reports' (queue tasks-reports)" in answer.json()["reason"]
        assert "queue_key" not in outcome_line(routed, name)
        assert routed.runs(task_id) == []

    def test_a_single_queue_worker_checks_nothing_and_logs_default(
        self, issuer: LocalIssuer, tmp_path: Path
    ) -> None:
        with app_worker(tmp_path, issuer) as single:
            task_id, name = new_id(), new_id()
            answer = single.post(
                "record", {"id": task_id}, headers=cloud_tasks_headers("any-q", name)
            )
            assert answer.json()["status"] == "ok"
            assert outcome_line(single, name)["queue_key"] == "default"


# --- the real worker process behind the real emulator ---------------------------------

LOCATION = "projects/svc-queues/locations/us-central1"
INVOKER = "tasks-invoker@svc-queues.iam.gserviceaccount.com"
AUDIENCE = "https://worker-svc-queues.a.run.app"


def _wait_until(condition: Callable[[], Any], timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.integration
def test_the_worker_process_refuses_a_task_from_the_wrong_emulator_queue(tmp_path: Path) -> None:
    records = tmp_path / "records.jsonl"
    suffix = new_id()[:8]
    ids = {"default": f"d-{suffix}", "email": f"e-{suffix}"}
    with EmulatorProcess() as emulator:
        client = emulator.client()
        paths = {
            key: client.create_queue(
                parent=LOCATION, queue=tasks_v2.Queue(name=f"{LOCATION}/queues/{queue_id}")
            ).name
            for key, queue_id in ids.items()
        }
        worker = WorkerProcess(
            {
                "TASKS_AUDIENCE": AUDIENCE,
                "TASKS_ALLOWED_INVOKERS": INVOKER,
                "TASKS_CERTS_URL": emulator.certs_url,
                "TASKS_EXTRA_MODULES": FIXTURE_MODULE,
                "TASKS_TEST_RECORD_FILE": str(records),
                WORKER_ENV_QUEUES: json.dumps(ids),
                WORKER_ENV_ROUTES: json.dumps({"record": "email"}),
            }
        )
        try:

            def create(queue: str, task_id: str) -> str:
                task = tasks_v2.Task(
                    http_request=tasks_v2.HttpRequest(
                        http_method=tasks_v2.HttpMethod.POST,
                        url=f"{worker.url}/tasks/record",
                        headers={"Content-Type": "application/json"},
                        body=json.dumps({"id": task_id}).encode(),
                        oidc_token=tasks_v2.OidcToken(
                            service_account_email=INVOKER, audience=AUDIENCE
                        ),
                    )
                )
                created: tasks_v2.Task = client.create_task(parent=queue, task=task)
                return created.name.rsplit("/", 1)[1]

            def gone(queue: str, task: str) -> bool:
                try:
                    client.get_task(name=f"{queue}/tasks/{task}")
                except NotFound:
                    return True
                return False

            right, wrong = new_id(), new_id()
            right_task = create(paths["email"], right)
            wrong_task = create(paths["default"], wrong)
            ran = worker.wait_for_log(lambda e: e.get("task_name") == right_task and "outcome" in e)
            assert (ran["outcome"], ran["queue_key"]) == ("ok", "email")
            refused = worker.wait_for_log(
                lambda e: e.get("task_name") == wrong_task and "outcome" in e
            )
            assert (refused["outcome"], refused["status"], refused["queue_key"]) == (
                "dead_letter",
                200,
                "default",
            )
            letter = worker.wait_for_log(
                lambda e: (
                    e.get("logger") == "service.deadletter" and e.get("task_name") == wrong_task
                )
            )
            assert letter["message"].startswith(f"dead letter: record task {wrong_task}: ")
            assert letter["dead_letter"]["reason"].startswith(
                "misrouted task: type 'record' arrived on queue 'default' "
                f"(queue {ids['default']}); its route names queue 'email' (queue {ids['email']})"
            )
            # Acknowledged: the emulator deletes it after one attempt instead of retrying.
            _wait_until(lambda: gone(paths["default"], wrong_task))
            _wait_until(lambda: gone(paths["email"], right_task))
            attempts = worker.entries(lambda e: e.get("task_name") == wrong_task and "outcome" in e)
            assert len(attempts) == 1
            runs = [r["id"] for r in iter_json_lines(records) if r["event"] == "start"]
            assert runs == [right]
        finally:
            worker.stop()
