"""`--queue KEY` on purpose: the enqueue helper declares it, the worker accepts the task on
that queue (and still refuses one that arrived elsewhere), and a replay keeps the choice
while a misrouted task is replayed to its route."""

from __future__ import annotations

import dataclasses

from contract.names import HEADER_QUEUE_OVERRIDE
from enqueue.outputs import StackOutputs
from enqueue.queues import StackQueues
from enqueue.spec import TaskSpec, build_task
from ops.dead_letters import DeadLetterRecord
from ops.replay import plan_replays
from service.queues import parse_queue_routing

BASE = "projects/p/locations/l/queues"
QUEUES = {"default": f"{BASE}/q-default", "email": f"{BASE}/q-email", "reports": f"{BASE}/q-rep"}
ROUTES = {"send_email": "email"}
OUTPUTS = StackOutputs(
    project="p",
    location="l",
    queue=QUEUES["default"],
    service_url="https://worker.example.com",
    audience="https://worker.example.com",
    invoker_email="tasks-invoker@p.iam.gserviceaccount.com",
    queues=StackQueues(paths=QUEUES, routes=ROUTES, deadlines_s={}),
)
ROUTING = parse_queue_routing(
    '{"default": "q-default", "email": "q-email", "reports": "q-rep"}',
    '{"send_email": "email"}',
)


def headers_of(spec: TaskSpec) -> dict[str, str]:
    return dict(build_task(spec, OUTPUTS, task_id="t1").task.http_request.headers)


def test_only_a_real_override_is_declared() -> None:
    assert headers_of(TaskSpec(type="send_email", queue="reports"))[HEADER_QUEUE_OVERRIDE] == (
        "reports"
    )
    assert HEADER_QUEUE_OVERRIDE not in headers_of(TaskSpec(type="send_email", queue="email"))
    assert HEADER_QUEUE_OVERRIDE not in headers_of(TaskSpec(type="send_email"))


def test_the_worker_accepts_the_chosen_queue_and_still_refuses_others() -> None:
    assert ROUTING is not None
    assert ROUTING.misroute("send_email", "q-email") is None  # its route
    assert ROUTING.misroute("send_email", "q-rep", override="reports") is None  # chosen
    refused = ROUTING.misroute("send_email", "q-default", override="reports")
    assert refused is not None
    assert refused.startswith("misrouted task")
    assert ROUTING.misroute("send_email", "q-rep") is not None  # no override: misrouted


def record(**changes: object) -> DeadLetterRecord:
    base = DeadLetterRecord(
        id="q-rep/t1",
        task_type="send_email",
        body=b"{}",
        headers={"content-type": "application/json"},
        task_name="t1",
        queue_key="reports",
        queue_id="q-rep",
        kind="permanent",
        last_error="misrouted task",
        recorded_at=None,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_misrouted_letter_is_replayed_to_its_route() -> None:
    [replay] = plan_replays([record()], OUTPUTS)
    assert replay.built.target.key == "email"
    assert HEADER_QUEUE_OVERRIDE not in dict(replay.built.task.http_request.headers)


def test_a_letter_sent_with_queue_on_purpose_is_replayed_there() -> None:
    chosen = record(
        headers={"content-type": "application/json", "x-tasks-queue-override": "reports"}
    )
    [replay] = plan_replays([chosen], OUTPUTS)
    assert replay.built.target.key == "reports"
    assert dict(replay.built.task.http_request.headers)[HEADER_QUEUE_OVERRIDE] == "reports"
