"""Several queues: the outputs' maps read and checked, each task type routed to its queue
with that queue's deadline, overrides, and every inconsistency refused before a create.

The integration tests run the real emulator with three queues and read the tasks back
with the official client.
"""

from __future__ import annotations

import asyncio
import io
import json
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from contract.names import HEADER_QUEUE_NAME
from emulator.testing import EmulatorProcess
from enqueue import (
    AsyncEnqueuer,
    Enqueuer,
    OutputsError,
    StackOutputs,
    TaskSpec,
    TaskValidationError,
    enqueue_many,
    task_id_for_key,
)
from enqueue.cli import main
from enqueue.defaults import Transport
from tests.enqueue.conftest import Target, make_queue, outputs_dict, task_names

pytestmark = pytest.mark.usefixtures("no_emulator_env")
QUEUE = "projects/demo-project/locations/europe-west1/queues"
SINGLE: dict[str, Any] = {
    "project": "demo-project",
    "location": "europe-west1",
    "queue": f"{QUEUE}/tasks-default",
    "service_url": "https://worker-abc-ew.a.run.app",
    "audience": "https://worker-abc-ew.a.run.app",
    "invoker_email": "tasks-invoker@demo-project.iam.gserviceaccount.com",
    "dispatch_deadline": "60s",
}
MULTI: dict[str, Any] = {
    **SINGLE,
    "queues": {
        "default": f"{QUEUE}/tasks-default",
        "email": f"{QUEUE}/tasks-email",
        "reports": f"{QUEUE}/tasks-reports",
    },
    "routes": {"send_email": "email", "build_report": "reports"},
    "dispatch_deadlines": {"default": "60s", "email": "30s", "reports": "1800s"},
}


class TestOutputs:
    def test_an_older_stack_is_one_default_queue(self) -> None:
        outputs = StackOutputs.from_mapping(SINGLE)
        assert dict(outputs.stack_queues.paths) == {"default": SINGLE["queue"]}
        target = outputs.target("anything")
        assert (target.key, target.path, target.deadline_s) == ("default", SINGLE["queue"], 60)
        with pytest.raises(TaskValidationError, match="'email' is not a queue of this stack"):
            outputs.target("anything", "email")

    def test_routes_pick_the_queue_and_its_deadline(self) -> None:
        outputs = StackOutputs.from_mapping(MULTI)
        email = outputs.target("send_email")
        assert (email.key, email.path, email.deadline_s) == ("email", f"{QUEUE}/tasks-email", 30)
        assert outputs.target("build_report").deadline_s == 1800
        assert outputs.target("unrouted").key == "default"
        assert outputs.target("send_email", "reports").key == "reports"  # explicit override

    def test_a_queue_without_a_deadline_gets_cloud_tasks_default(self) -> None:
        data = {**MULTI, "dispatch_deadlines": {"default": "60s"}}
        assert StackOutputs.from_mapping(data).target("send_email").deadline_s is None

    def test_the_maps_are_known_outputs(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            StackOutputs.from_mapping(MULTI)

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            (
                {"routes": {"send_email": "mail"}},
                "output routes.send_email routes 'send_email' to queue 'mail', which the outputs "
                "lack \\(queues: default, email, reports\\)",
            ),
            ({"routes": {"a/b": "email"}}, "output routes: 'a/b' is not a valid task type"),
            ({"routes": {"send_email": 3}}, "output routes.send_email must be a non-empty string"),
            ({"routes": ["send_email"]}, "output routes must be a JSON object"),
            ({"queues": "x"}, "output queues must be a JSON object"),
            (
                {"queues": {"default": SINGLE["queue"], "Email": f"{QUEUE}/e"}},
                "output queues: queue key 'Email' must be",
            ),
            (
                {"queues": {"default": SINGLE["queue"], "email": "tasks-email"}},
                "output queues.email must be the full queue path",
            ),
            (
                {
                    "queues": {
                        "default": SINGLE["queue"],
                        "email": "projects/other/locations/europe-west1/queues/e",
                    }
                },
                "output queues.email .* does not belong to project 'demo-project'",
            ),
            (
                {"queues": {"default": SINGLE["queue"], "email": SINGLE["queue"]}},
                "outputs queues.default and queues.email are the same queue",
            ),
            (
                {"queues": {"email": f"{QUEUE}/tasks-email"}},
                "output queues.default must be the queue output",
            ),
            (
                {"dispatch_deadlines": {"fax": "60s"}},
                "output dispatch_deadlines.fax names a queue the outputs lack",
            ),
            (
                {"dispatch_deadlines": {"email": "1h"}},
                "output dispatch_deadlines.email must be whole seconds within 15s..1800s",
            ),
        ],
    )
    def test_inconsistent_maps_are_refused(self, changes: dict[str, Any], message: str) -> None:
        with pytest.raises(OutputsError, match=message):
            StackOutputs.from_mapping({**MULTI, **changes})

    def test_routes_without_queues_may_only_name_default(self) -> None:
        data = {**SINGLE, "routes": {"ping": "default"}}
        assert StackOutputs.from_mapping(data).target("ping").key == "default"
        with pytest.raises(OutputsError, match=r"routes\.ping routes 'ping' to queue 'email'"):
            StackOutputs.from_mapping({**SINGLE, "routes": {"ping": "email"}})

    def test_a_bad_override_key_is_refused_on_the_spec(self) -> None:
        with pytest.raises(TaskValidationError, match="queue: queue key 'E-mail' must be"):
            TaskSpec(type="send_email", queue="E-mail")


# --- against the real emulator ---------------------------------------------------------

NO_ENV: dict[str, str] = {}


def three_queues(emu: EmulatorProcess, service_url: str, *, paused: bool) -> dict[str, Any]:
    """Outputs for three fresh emulator queues, as a stack with routes would export them."""
    paths = {key: make_queue(emu, paused=paused) for key in ("default", "email", "reports")}
    data: dict[str, Any] = outputs_dict(emu, paths["default"], service_url)
    data["dispatch_deadline"] = "60s"
    data["queues"] = paths
    data["routes"] = {"send_email": "email", "build_report": "reports"}
    data["dispatch_deadlines"] = {"default": "60s", "email": "30s", "reports": "1800s"}
    return data


def deadline_of(emu: EmulatorProcess, name: str) -> timedelta:
    deadline: timedelta = emu.client().get_task(name=name).dispatch_deadline
    return deadline


@pytest.mark.integration
@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_each_type_lands_on_its_routed_queue_with_its_deadline(
    emulator: EmulatorProcess, transport: Transport
) -> None:
    data = three_queues(emulator, "https://worker.example.test", paused=True)
    paths = data["queues"]
    outputs = StackOutputs.from_mapping(data)
    with Enqueuer(outputs, transport=transport, env=NO_ENV) as enqueuer:
        email = enqueuer.enqueue(TaskSpec(type="send_email", key="a"))
        report = enqueuer.send("build_report", {"id": 7}, key="r7")
        ping = enqueuer.send("ping", key="p")
        forced = enqueuer.send("build_report", key="r8", queue="email")
        custom = enqueuer.send("send_email", key="b", deadline=45)
    assert email.queue == "email"
    assert email.name == f"{paths['email']}/tasks/{task_id_for_key('send_email', 'a')}"
    assert task_names(emulator, paths["email"]) == sorted([email.name, forced, custom])
    assert task_names(emulator, paths["reports"]) == [report]
    assert task_names(emulator, paths["default"]) == [ping]
    assert deadline_of(emulator, email.name) == timedelta(seconds=30)
    assert deadline_of(emulator, report) == timedelta(seconds=1800)
    assert deadline_of(emulator, ping) == timedelta(seconds=60)
    assert deadline_of(emulator, forced) == timedelta(seconds=30)  # the override's deadline
    assert deadline_of(emulator, custom) == timedelta(seconds=45)  # the task's own wins


@pytest.mark.integration
def test_an_unknown_override_sends_nothing(emulator: EmulatorProcess) -> None:
    data = three_queues(emulator, "https://worker.example.test", paused=True)
    outputs = StackOutputs.from_mapping(data)
    with (
        Enqueuer(outputs, env=NO_ENV) as enqueuer,
        pytest.raises(TaskValidationError, match="'fax' is not a queue of this stack"),
    ):
        enqueuer.send("send_email", key="a", queue="fax")

    async def bulk() -> None:
        async with AsyncEnqueuer(outputs, env=NO_ENV) as enqueuer:
            await enqueue_many(enqueuer, [TaskSpec(type="ping")], queue="fax")

    with pytest.raises(TaskValidationError, match="'fax' is not a queue of this stack"):
        asyncio.run(bulk())
    assert all(task_names(emulator, path) == [] for path in data["queues"].values())


@pytest.mark.integration
def test_delivered_tasks_carry_their_queue_name(emulator: EmulatorProcess, target: Target) -> None:
    data = three_queues(emulator, target.url, paused=False)
    outputs = StackOutputs.from_mapping(data)

    async def bulk() -> int:
        async with AsyncEnqueuer(outputs, env=NO_ENV) as enqueuer:
            specs = [TaskSpec(type=t) for t in ("send_email", "build_report", "ping")]
            summary = await enqueue_many(enqueuer, specs)
        return summary.created

    assert asyncio.run(bulk()) == 3
    got = {r.path: r.headers[HEADER_QUEUE_NAME] for r in target.wait_for(3)}
    ids = {key: path.rsplit("/", 1)[1] for key, path in data["queues"].items()}
    assert got == {
        "/tasks/send_email": ids["email"],
        "/tasks/build_report": ids["reports"],
        "/tasks/ping": ids["default"],
    }


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    code = main(argv, out=out)
    return code, out.getvalue(), capsys.readouterr().err


@pytest.mark.integration
def test_cli_send_and_bulk_route_and_override(
    emulator: EmulatorProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = three_queues(emulator, "https://worker.example.test", paused=True)
    paths = data["queues"]
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(data))
    code, out, _ = run(["--outputs", str(outputs), "send", "send_email", "--key", "k"], capsys)
    assert (code, out.rsplit("/tasks/", 1)[0]) == (0, paths["email"])
    code, out, _ = run(
        ["--outputs", str(outputs), "send", "send_email", "--key", "k2", "--queue", "reports"],
        capsys,
    )
    assert (code, out.rsplit("/tasks/", 1)[0]) == (0, paths["reports"])

    lines = [
        {"type": "send_email", "key": "b1"},  # routed to email
        {"type": "build_report", "key": "b2"},  # routed to reports, unless --queue
        {"type": "ping", "key": "b3", "queue": "email"},  # its own override wins
    ]
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, out, _ = run(["--outputs", str(outputs), "bulk", str(tasks), "--no-progress"], capsys)
    assert code == 0, out
    assert len(task_names(emulator, paths["email"])) == 3  # k, b1, b3
    assert len(task_names(emulator, paths["reports"])) == 2  # k2, b2
    tasks.write_text(json.dumps({"type": "build_report", "key": "b4"}) + "\n")
    argv = ["--outputs", str(outputs), "bulk", str(tasks), "--queue", "default", "--no-progress"]
    assert run(argv, capsys)[0] == 0
    assert len(task_names(emulator, paths["default"])) == 1


@pytest.mark.integration
def test_cli_refuses_unknown_queues_before_sending(
    emulator: EmulatorProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = three_queues(emulator, "https://worker.example.test", paused=True)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(data))
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"type": "ping"}) + "\n")

    code, out, err = run(["--outputs", str(outputs), "send", "ping", "--queue", "fax"], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("error: queue: 'fax' is not a queue of this stack (its queues: ")
    assert err.count("\n") == 1
    code, out, err = run(["--outputs", str(outputs), "bulk", str(tasks), "--queue", "fax"], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("error: queue: 'fax' is not a queue of this stack")

    data["routes"]["ping"] = "fax"  # outputs that route a type to a queue they lack
    outputs.write_text(json.dumps(data))
    code, out, err = run(["--outputs", str(outputs), "bulk", str(tasks)], capsys)
    assert (code, out) == (2, "")
    assert "output routes.ping routes 'ping' to queue 'fax', which the outputs lack" in err
    assert err.count("\n") == 1
    assert all(task_names(emulator, path) == [] for path in data["queues"].values())
