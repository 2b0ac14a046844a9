"""The plan engine: what it records, how it isolates stacks, how it fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contract.names import MAP_STACK_OUTPUT_KEYS, OPTIONAL_STACK_OUTPUT_KEYS, STACK_OUTPUT_KEYS
from contract.resources import PROJECT_NAME, QUEUE_TYPE, RUN_SERVICE_TYPE
from plan.engine import evaluate, evaluate_config
from plan.errors import PlanError
from plan.mocks import project_number
from plan.model import Plan
from plan.stack_config import load_stack_config


def test_urns_parents_and_dependencies_are_the_engines(all_plans: dict[str, Plan]) -> None:
    plan = all_plans["dev"]
    queue = plan.one(QUEUE_TYPE)
    assert queue.urn == (
        "urn:pulumi:dev::cloud-tasks-pipeline::tasks:index:TaskQueue"
        "$gcp:cloudtasks/queue:Queue::tasks-queue-queue"
    )
    assert plan.by_urn(queue.parent or "").type == "tasks:index:TaskQueue"
    # Input dependencies: the image's ref in the service; in prod, whose queue has a
    # queue-level target, the service's URL in the queue.
    service = plan.one(RUN_SERVICE_TYPE)
    assert {plan.by_urn(d).name for d in service.dependencies} >= {"tasks-worker-image"}
    prod = all_plans["prod"]
    assert prod.one(RUN_SERVICE_TYPE).urn in prod.one(QUEUE_TYPE).dependencies


def test_order_puts_parents_and_dependencies_first(all_plans: dict[str, Plan]) -> None:
    for plan in all_plans.values():
        seen: set[str] = set()
        for resource in plan.resources:
            assert resource.parent is None or resource.parent in seen
            assert set(resource.dependencies) <= seen, resource.urn
            seen.add(resource.urn)


def test_json_round_trip_and_shape(all_plans: dict[str, Plan]) -> None:
    plan = all_plans["staging"]
    data = json.loads(plan.dumps())
    assert set(data) == {"stack", "project", "resources", "outputs"}
    assert data["project"] == PROJECT_NAME
    assert set(data["resources"][0]) == {
        "urn",
        "type",
        "name",
        "parent",
        "dependencies",
        "provider",
        "inputs",
        "outputs",
    }
    assert tuple(data["outputs"]) == (
        *STACK_OUTPUT_KEYS,
        *OPTIONAL_STACK_OUTPUT_KEYS,
        *MAP_STACK_OUTPUT_KEYS,
    )
    assert Plan.from_json(data) == plan


def test_mocks_compute_realistic_outputs(all_plans: dict[str, Plan]) -> None:
    plan = all_plans["staging"]
    number = project_number(str(plan.exports.project))
    assert len(number) == 12
    assert number.isdigit()
    assert plan.one(RUN_SERVICE_TYPE).outputs["uri"] == (
        f"https://tasks-worker-{number}.europe-west1.run.app"
    )
    queue_name = plan.one(QUEUE_TYPE).outputs["name"]
    assert queue_name.startswith("tasks-queue-queue-")
    assert len(queue_name) == len("tasks-queue-queue-") + 7


def test_stacks_evaluated_in_one_process_do_not_leak(all_plans: dict[str, Plan]) -> None:
    again = [evaluate("prod"), evaluate("dev")]
    assert again == [all_plans["prod"], all_plans["dev"]]
    assert all(r.urn.startswith("urn:pulumi:dev::") for r in again[1].resources)


def test_unknown_stack_names_the_known_ones() -> None:
    with pytest.raises(PlanError, match=r"Pulumi\.qa\.yaml.*known stacks: dev, prod, staging"):
        evaluate("qa")


def test_secrets_in_stack_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.sec.yaml").write_text(
        "config:\n  cloud-tasks-pipeline:image:\n    secure: AAABAD==\n"
    )
    with pytest.raises(PlanError, match="encrypted secret"):
        load_stack_config("sec", tmp_path)


def test_stack_file_values_reach_the_program_as_the_cli_passes_them(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text(
        "name: cloud-tasks-pipeline\nruntime: python\nconfig:\n"
        "  max_attempts: {type: integer, default: 10}\n"
        "  min_backoff: {type: string, default: 1s}\n"
        "  queue_name: {type: string, default: ''}\n"
    )
    (tmp_path / "Pulumi.x.yaml").write_text(
        "config:\n  gcp:project: p-123456\n  max_attempts: 3\n  queue_paused: true\n"
        "  enqueuers:\n    - group:a@example.com\n"
    )
    assert load_stack_config("x", tmp_path) == {
        "gcp:project": "p-123456",
        "cloud-tasks-pipeline:max_attempts": "3",  # the stack's value wins
        "cloud-tasks-pipeline:queue_paused": "true",
        "cloud-tasks-pipeline:enqueuers": '["group:a@example.com"]',
        "cloud-tasks-pipeline:min_backoff": "1s",  # Pulumi.yaml's default, merged in
        "cloud-tasks-pipeline:queue_name": "",
    }


def test_a_project_key_without_default_is_required_as_the_cli_requires_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "Pulumi.yaml").write_text(
        "name: cloud-tasks-pipeline\nruntime: python\nconfig:\n"
        "  image: {type: string}\n  queue_name: {type: string}\n"
    )
    (tmp_path / "Pulumi.x.yaml").write_text("config:\n  gcp:project: p-123456\n")
    with pytest.raises(
        PlanError, match="Stack 'x' is missing configuration values image, queue_name"
    ):
        load_stack_config("x", tmp_path)


def test_the_empty_defaults_of_optional_keys_mean_unset() -> None:
    config = load_stack_config("dev")
    assert config["cloud-tasks-pipeline:queue_name"] == ""  # Pulumi.yaml's default
    assert config["cloud-tasks-pipeline:image"] == ""
    plan = evaluate_config("dev", config)
    types = [r.type for r in plan.resources]
    assert "docker-build:index:Image" in types  # no prebuilt image: it is built
    (queue,) = [r for r in plan.resources if r.type == "gcp:cloudtasks/queue:Queue"]
    assert "name" not in queue.inputs or queue.inputs["name"] is None  # auto-named


def test_a_config_error_is_a_plan_error_with_nothing_declared() -> None:
    config = load_stack_config("dev")
    config["cloud-tasks-pipeline:max_concurrent_dispatches"] = "0"
    with pytest.raises(PlanError, match="max_concurrent_dispatches = '0'") as caught:
        evaluate_config("dev", config)
    assert caught.value.declared == 0
