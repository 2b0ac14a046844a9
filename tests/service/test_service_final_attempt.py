"""Final-attempt capture: the decision as a table, then through `TaskDelivery`.

`FinalAttempts.decide` must say "final" whenever Cloud Tasks may give up after this
attempt (both limits of RetryConfig reached), erring toward "final" where it cannot
know; the delivery then records a dead letter and acknowledges instead of failing.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from contract.names import WORKER_ENV_DEAD_LETTER_BUCKET, WORKER_ENV_RETRY_POLICIES
from contract.retry_policy import (
    HEADER_NOT_BEFORE,
    HEADER_TASK_RETRY_CONFIG,
    RetryPolicy,
    RetryPolicyError,
    dump_policies,
    exhausted,
    parse_policies,
)
from service import InMemoryIdempotencyStore
from service.config import ConfigError, Settings
from service.delivery import TaskDelivery, TaskRequest
from service.final_attempt import CLOCK_MARGIN_S, FinalAttempts
from tests.service.test_service_delivery import Recorder

NOW = 1_800_000_000.0


def policy(attempts: int, duration: float = 0) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=attempts,
        min_backoff=1,
        max_backoff=10,
        max_doublings=2,
        max_retry_duration=duration,
    )


def headers(retry: int | None, queue: str = "jobs", **more: str) -> dict[str, str]:
    found = {"x-cloudtasks-queuename": queue, "x-cloudtasks-taskname": "t1", **more}
    if retry is not None:
        found["x-cloudtasks-taskretrycount"] = str(retry)
    return found


NB = HEADER_NOT_BEFORE.lower()
OWN = HEADER_TASK_RETRY_CONFIG.lower()
QUEUES = {"default": "jobs", "email": "mail-q"}

# (case, queue policies, headers, final?)
CASES: list[tuple[str, dict[str, RetryPolicy], dict[str, str], bool]] = [
    ("first of 3", {"default": policy(3)}, headers(0), False),
    ("second of 3", {"default": policy(3)}, headers(1), False),
    ("third of 3", {"default": policy(3)}, headers(2), True),
    ("past max_attempts (redelivery)", {"default": policy(3)}, headers(5), True),
    ("one attempt only", {"default": policy(1)}, headers(0), True),
    ("unlimited attempts, no duration", {"default": policy(-1)}, headers(500), False),
    (
        "attempts reached, duration not",
        {"default": policy(3, 3600)},
        headers(2, **{NB: str(NOW - 600)}),
        False,
    ),
    (
        "attempts reached, duration too",
        {"default": policy(3, 3600)},
        headers(2, **{NB: str(NOW - 3700)}),
        True,
    ),
    (
        "duration reached within the clock margin counts",
        {"default": policy(3, 3600)},
        headers(2, **{NB: str(NOW - 3600 + CLOCK_MARGIN_S / 2)}),
        True,
    ),
    (
        "duration reached, attempts not",
        {"default": policy(5, 60)},
        headers(2, **{NB: str(NOW - 3700)}),
        False,
    ),
    (
        "duration only (unlimited attempts), not reached",
        {"default": policy(-1, 3600)},
        headers(9, **{NB: str(NOW - 60)}),
        False,
    ),
    (
        "duration only, reached",
        {"default": policy(-1, 3600)},
        headers(9, **{NB: str(NOW - 4000)}),
        True,
    ),
    (
        "retry without the not-before header: duration counts as reached",
        {"default": policy(3, 3600)},
        headers(2),
        True,
    ),
    (
        "first attempt without the header: its ETA bounds the elapsed time",
        {"default": policy(1, 3600)},
        headers(0, **{"x-cloudtasks-tasketa": str(NOW - 5)}),
        False,
    ),
    (
        "the task's own retry config overrides the queue's",
        {"default": policy(10)},
        headers(1, **{OWN: json.dumps(policy(2).to_json())}),
        True,
    ),
    (
        "the task's own config allows more than the queue's",
        {"default": policy(2)},
        headers(1, **{OWN: json.dumps(policy(5).to_json())}),
        False,
    ),
    ("an unreadable task config is kept", {"default": policy(10)}, headers(0, **{OWN: "{"}), True),
    ("a queue of the map: its own policy", {"email": policy(2)}, headers(1, "mail-q"), True),
    ("a queue without a policy is kept", {"default": policy(9)}, headers(0, "other-q"), True),
    ("not from Cloud Tasks: its caller sees it", {"default": policy(1)}, headers(None), False),
]


@pytest.mark.parametrize(("case", "policies", "given", "final"), CASES, ids=[c[0] for c in CASES])
def test_decision_table(
    case: str, policies: dict[str, RetryPolicy], given: dict[str, str], final: bool
) -> None:
    keys = {queue_id: key for key, queue_id in QUEUES.items()}  # as service.queues maps them
    verdict = FinalAttempts(policies).decide(given, keys.get(given["x-cloudtasks-queuename"]), NOW)
    assert verdict.final is final, verdict.why


def test_without_a_queue_map_every_delivery_is_the_default_queue() -> None:
    # One queue: the delivery's key is `default` whatever the queue is named.
    verdict = FinalAttempts({"default": policy(2)}).decide(headers(1, "any-name"), "default", NOW)
    assert (verdict.final, verdict.queue_key, verdict.attempts) == (True, "default", 2)
    assert "2 of 2 per queue 'default'" in verdict.why


@pytest.mark.parametrize(
    ("attempts", "elapsed", "limits", "expected"),
    [
        (3, 0, (3, 0), True),
        (2, 0, (3, 0), False),
        (3, 10, (3, 60), False),
        (3, 60, (3, 60), True),
        (1, 60, (-1, 60), True),
        (10**6, 10**9, (-1, 0), False),  # both unlimited: never (retention ends it)
    ],
)
def test_exhausted_needs_both_limits(
    attempts: int, elapsed: float, limits: tuple[int, float], expected: bool
) -> None:
    assert exhausted(policy(*limits), attempts, elapsed) is expected


def test_policies_round_trip_and_refuse_bad_input() -> None:
    policies = {"default": policy(3, 60), "email": policy(-1)}
    assert parse_policies(dump_policies(policies), source="X") == policies
    with pytest.raises(RetryPolicyError, match=r"X\[default\].max_attempts: give an integer"):
        parse_policies(
            '{"default": {"max_attempts": -2, "min_backoff": "1s", '
            '"max_backoff": "1s", "max_doublings": 0, "max_retry_duration": "0s"}}',
            source="X",
        )
    with pytest.raises(RetryPolicyError, match="missing max_doublings"):
        parse_policies(
            '{"default": {"max_attempts": 1, "min_backoff": "1s", '
            '"max_backoff": "1s", "max_retry_duration": "0s"}}',
            source="X",
        )
    with pytest.raises(RetryPolicyError, match="is not JSON"):
        parse_policies("{", source="X")


def test_settings_read_the_policies_and_the_bucket_and_refuse_bad_values() -> None:
    env = {
        "HOST": "127.0.0.1",
        WORKER_ENV_RETRY_POLICIES: dump_policies({"default": policy(3)}),
        WORKER_ENV_DEAD_LETTER_BUCKET: "my-dead-letters",
    }
    settings = Settings.from_env(env)
    assert settings.final_attempts is not None
    assert settings.final_attempts.policies == {"default": policy(3)}
    assert settings.dead_letter_bucket == "my-dead-letters"
    assert Settings.from_env({"HOST": "127.0.0.1"}).final_attempts is None
    with pytest.raises(ConfigError, match="TASKS_RETRY_POLICIES is not JSON"):
        Settings.from_env({**env, WORKER_ENV_RETRY_POLICIES: "nope"})
    with pytest.raises(ConfigError, match="not a bucket name: give the name only"):
        Settings.from_env({**env, WORKER_ENV_DEAD_LETTER_BUCKET: "gs://my-dead-letters"})
    # TASKS_QUEUES is read once (service.queues) for routing and the policies alike.
    with pytest.raises(ConfigError, match="TASKS_QUEUES must be a JSON object"):
        Settings.from_env({**env, "TASKS_QUEUES": "[1]", "TASKS_ROUTES": "{}"})


def _deliver(task_type: str, retry: int, attempts: int) -> tuple[int, str, Recorder]:
    recorder = Recorder()
    delivery = TaskDelivery(
        recorder.registry,
        InMemoryIdempotencyStore(),
        dead_letter_sink=recorder,
        final_attempts=FinalAttempts({"default": policy(attempts)}),
    )
    request = TaskRequest(task_type, headers(retry), b'{"n": 7}')
    outcome = asyncio.run(delivery.deliver(request))
    return outcome.status, outcome.outcome, recorder


@pytest.mark.parametrize(
    ("task_type", "status"), [("transient", 429), ("crash", 500), ("slow", 503)]
)
def test_a_failure_before_the_last_attempt_is_retried(task_type: str, status: int) -> None:
    answered, outcome, recorder = _deliver(task_type, retry=1, attempts=3)
    assert (answered, recorder.letters) == (status, [])
    assert outcome != "dead_letter"


@pytest.mark.parametrize(
    ("task_type", "status", "error"),
    [
        ("transient", 429, "backend down"),
        ("crash", 500, "RuntimeError('boom')"),
        ("slow", 503, "handler exceeded its timeout"),
    ],
)
def test_a_failure_on_the_last_attempt_is_recorded_and_acknowledged(
    task_type: str, status: int, error: str
) -> None:
    answered, outcome, recorder = _deliver(task_type, retry=2, attempts=3)
    assert (answered, outcome) == (200, "dead_letter")
    [letter] = recorder.letters
    assert letter.kind == "final_attempt"
    assert letter.body == b'{"n": 7}'
    assert letter.last_status == status
    assert letter.queue_key == "default"
    assert letter.retry_policy == policy(3).to_json()
    assert error in letter.reason
    assert "final attempt (3 of 3" in letter.reason


def test_without_policies_the_last_attempt_fails_as_before() -> None:
    recorder = Recorder()
    delivery = TaskDelivery(
        recorder.registry, InMemoryIdempotencyStore(), dead_letter_sink=recorder
    )
    outcome = asyncio.run(delivery.deliver(TaskRequest("crash", headers(99), b"{}")))
    assert (outcome.status, recorder.letters) == (500, [])


class _FailingSink:
    async def record(self, letter: object) -> None:
        raise ConnectionError("bucket unreachable")


def test_a_sink_failure_on_the_last_attempt_answers_503_and_keeps_the_task_runnable() -> None:
    recorder = Recorder()
    store = InMemoryIdempotencyStore()
    delivery = TaskDelivery(
        recorder.registry,
        store,
        dead_letter_sink=_FailingSink(),
        final_attempts=FinalAttempts({"default": policy(3)}),
    )

    async def twice() -> tuple[int, int]:
        first = await delivery.deliver(TaskRequest("transient", headers(2), b'{"n": 1}'))
        again = await delivery.deliver(TaskRequest("transient", headers(3), b'{"n": 1}'))
        return first.status, again.status

    # 503: Cloud Tasks may still retry; the claim was released, so the retry runs again.
    assert asyncio.run(twice()) == (503, 503)
    assert recorder.runs == [("transient", 1), ("transient", 1)]
