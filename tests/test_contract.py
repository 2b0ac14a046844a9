"""The shared names are the contract docs/architecture.md fixes; a rename here breaks users."""

import re

from contract import LOCAL_OUTPUT_KEYS, OPTIONAL_STACK_OUTPUT_KEYS, STACK_OUTPUT_KEYS, limits
from contract.names import MAP_STACK_OUTPUT_KEYS


def test_stack_output_names_are_the_documented_contract() -> None:
    assert STACK_OUTPUT_KEYS == (
        "project",
        "location",
        "queue",
        "service_url",
        "audience",
        "invoker_email",
    )
    assert OPTIONAL_STACK_OUTPUT_KEYS == ("dispatch_deadline", "dead_letter_bucket")
    assert LOCAL_OUTPUT_KEYS[: len(STACK_OUTPUT_KEYS)] == STACK_OUTPUT_KEYS
    assert MAP_STACK_OUTPUT_KEYS == ("queues", "routes", "dispatch_deadlines")
    assert LOCAL_OUTPUT_KEYS[len(STACK_OUTPUT_KEYS) :] == (
        "dispatch_deadline",
        "dead_letter_bucket",
        "queues",
        "routes",
        "dispatch_deadlines",
        "emulator_host",
        "emulator_url",
        "storage_emulator_host",
    )


def test_id_patterns_match_the_documented_charsets() -> None:
    task_id = re.compile(limits.TASK_ID_PATTERN)
    queue_id = re.compile(limits.QUEUE_ID_PATTERN)
    assert task_id.fullmatch("a_B-9" * 100)
    assert not task_id.fullmatch("x" * 501)
    assert not task_id.fullmatch("has.dot")
    assert queue_id.fullmatch("q-1")
    assert not queue_id.fullmatch("q_1")
