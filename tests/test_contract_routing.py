"""The queue-key rule and the routing rule (`contract.routing`), fed the same corpus
through every consumer on the edges: the enqueue helper's override and outputs, the
worker's `TASKS_QUEUES`/`TASKS_ROUTES`. (The stack config applies the same rule; its
tests live with it.)
"""

from __future__ import annotations

import json

import pytest

from contract.routing import DEFAULT_QUEUE_KEY, output_queues, queue_for, queue_key_problem
from enqueue import OutputsError, StackOutputs, TaskSpec, TaskValidationError
from service.queues import QueueRoutingError, parse_queue_routing

QUEUE_KEYS = [
    "default",
    "email",
    "third-party-api",
    "q2",
    "a",
    "a" * 40,
    "a" * 41,
    "Email",
    "1q",
    "-q",
    "q_q",
    "q.q",
    "q q",
    "",
    "é",
]
PATH = "projects/p/locations/l/queues"
OUTPUTS = {
    "project": "p",
    "location": "l",
    "queue": f"{PATH}/tasks-default",
    "service_url": "https://worker.example.test",
    "audience": "https://worker.example.test",
    "invoker_email": "invoker@p.iam.gserviceaccount.com",
}


def test_the_corpus_has_both_verdicts() -> None:
    verdicts = {queue_key_problem(key) is None for key in QUEUE_KEYS}
    assert verdicts == {True, False}


@pytest.mark.parametrize("key", QUEUE_KEYS)
def test_an_override_follows_the_rule(key: str) -> None:
    if queue_key_problem(key) is None:
        assert TaskSpec(type="t", queue=key).queue == key
    else:
        with pytest.raises(TaskValidationError, match=r"^queue: "):
            TaskSpec(type="t", queue=key)


@pytest.mark.parametrize("key", [k for k in QUEUE_KEYS if k != DEFAULT_QUEUE_KEY])
def test_the_outputs_and_the_worker_follow_the_rule(key: str) -> None:
    queues = {DEFAULT_QUEUE_KEY: OUTPUTS["queue"], key: f"{PATH}/other"}
    worker_queues = json.dumps({DEFAULT_QUEUE_KEY: "tasks-default", key: "other"})
    if queue_key_problem(key) is None:
        outputs = StackOutputs.from_mapping({**OUTPUTS, "queues": queues, "routes": {"t": key}})
        assert outputs.target("t").key == key
        routing = parse_queue_routing(worker_queues, json.dumps({"t": key}))
        assert routing is not None
        assert routing.misroute("t", "other") is None
    else:
        with pytest.raises(OutputsError, match="queue key"):
            StackOutputs.from_mapping({**OUTPUTS, "queues": queues})
        with pytest.raises(QueueRoutingError, match="queue key"):
            parse_queue_routing(worker_queues, None)


def test_an_unrouted_type_goes_to_default_everywhere() -> None:
    routes = {"send_email": "email"}
    queues = {DEFAULT_QUEUE_KEY: OUTPUTS["queue"], "email": f"{PATH}/tasks-email"}
    outputs = StackOutputs.from_mapping({**OUTPUTS, "queues": queues, "routes": routes})
    routing = parse_queue_routing(
        json.dumps({DEFAULT_QUEUE_KEY: "tasks-default", "email": "tasks-email"}),
        json.dumps(routes),
    )
    assert routing is not None
    for task_type in ("send_email", "report", "smoke"):
        key = queue_for(task_type, routes)
        assert outputs.target(task_type).key == key
        assert routing.misroute(task_type, routing.queue_ids[key]) is None
    assert output_queues(OUTPUTS) == {DEFAULT_QUEUE_KEY: OUTPUTS["queue"]}
    assert output_queues({**OUTPUTS, "queues": queues}) == queues
