"""Config switches no committed stack exercises, evaluated through the whole program."""

from __future__ import annotations

from contract.names import OUTPUT_AUDIENCE, WORKER_ENV_AUDIENCE
from contract.resources import (
    ARTIFACT_REPOSITORY_TYPE,
    IMAGE_TYPE,
    PROJECT_SERVICE_TYPE,
    QUEUE_IAM_MEMBER_TYPE,
    QUEUE_TYPE,
    RUN_SERVICE_TYPE,
    SERVICE_ACCOUNT_IAM_MEMBER_TYPE,
    SERVICE_ACCOUNT_TYPE,
)
from plan.engine import evaluate_config
from plan.mocks import project_number
from plan.model import Plan
from plan.stack_config import load_stack_config

KEY = "cloud-tasks-pipeline:"


def dev_with(**overrides: str) -> Plan:
    config = load_stack_config("dev")
    config.update({f"{KEY}{k}": v for k, v in overrides.items()})
    return evaluate_config("dev", config)


class TestCustomAudience:
    def test_one_custom_audience_for_service_worker_queue_and_output(self) -> None:
        audience = "https://tasks.example.com"
        plan = dev_with(custom_audience=audience, queue_http_target="true")
        service = plan.one(RUN_SERVICE_TYPE).inputs
        envs = {e["name"]: e.get("value") for e in service["template"]["containers"][0]["envs"]}
        assert service["customAudiences"] == [audience]
        assert envs[WORKER_ENV_AUDIENCE] == audience
        assert plan.one(QUEUE_TYPE).inputs["httpTarget"]["oidcToken"]["audience"] == audience
        assert plan.outputs[OUTPUT_AUDIENCE] == audience

    def test_without_it_the_deterministic_url_is_the_services_custom_audience(self) -> None:
        # Declared, so a token for it is accepted whichever run.app URL a task is sent to.
        plan = dev_with()
        audience = f"https://tasks-worker-{project_number('my-tasks-dev')}.europe-west1.run.app"
        assert plan.one(RUN_SERVICE_TYPE).inputs["customAudiences"] == [audience]
        assert plan.outputs[OUTPUT_AUDIENCE] == audience


class TestPrebuiltImage:
    def test_no_registry_no_build_and_the_image_is_used_verbatim(self) -> None:
        image = "europe-docker.pkg.dev/shared/images/worker:1.4.2"
        plan = dev_with(image=image)
        assert plan.of_type(IMAGE_TYPE) == []
        assert plan.of_type(ARTIFACT_REPOSITORY_TYPE) == []
        apis = {s.inputs["service"] for s in plan.of_type(PROJECT_SERVICE_TYPE)}
        assert "artifactregistry.googleapis.com" not in apis
        assert plan.one(RUN_SERVICE_TYPE).inputs["template"]["containers"][0]["image"] == image


class TestConfiguredEnqueuers:
    def test_each_principal_gets_the_three_grants_and_no_account_is_created(self) -> None:
        principals = [
            "group:backend@example.com",
            "serviceAccount:ci@other.iam.gserviceaccount.com",
        ]
        plan = dev_with(enqueuers=f'["{principals[0]}", "{principals[1]}"]')
        assert plan.of_type(SERVICE_ACCOUNT_TYPE) == []  # bootstrap/ creates accounts
        every_member = {r.inputs.get("member") for r in plan.resources}
        assert not {m for m in every_member if m and "tasks-enqueuer@" in m}
        on_queue = {
            (r.inputs["member"], r.inputs["role"]) for r in plan.of_type(QUEUE_IAM_MEMBER_TYPE)
        }
        assert on_queue == {(p, "roles/cloudtasks.enqueuer") for p in principals}
        act_as = {
            r.inputs["member"]
            for r in plan.of_type(SERVICE_ACCOUNT_IAM_MEMBER_TYPE)
            if r.inputs["role"] == "roles/iam.serviceAccountUser"
        }
        assert act_as == set(principals)

    def test_reordering_principals_keeps_resource_names(self) -> None:
        a, b = "group:a@example.com", "group:b@example.com"
        first = {r.urn for r in dev_with(enqueuers=f'["{a}", "{b}"]').resources}
        second = {r.urn for r in dev_with(enqueuers=f'["{b}", "{a}"]').resources}
        assert first == second


class TestQueueSwitches:
    def test_paused_queue(self) -> None:
        assert dev_with(queue_paused="true").one(QUEUE_TYPE).inputs["desiredState"] == "PAUSED"

    def test_named_queue_keeps_its_name(self) -> None:
        plan = dev_with(queue_name="orders")
        assert plan.one(QUEUE_TYPE).inputs["name"] == "orders"
        assert plan.outputs["queue"].endswith("/queues/orders")


class TestTraceExport:
    def test_on_the_worker_exports_to_cloud_trace_and_nothing_else_changes(self) -> None:
        off, on = dev_with(), dev_with(trace_export="true")
        envs = {
            e["name"]: e.get("value")
            for e in on.one(RUN_SERVICE_TYPE).inputs["template"]["containers"][0]["envs"]
        }
        assert envs["TASKS_TRACE_EXPORT"] == "https://telemetry.googleapis.com"
        assert "TASKS_TRACE_EXPORT" not in {
            e["name"] for e in off.one(RUN_SERVICE_TYPE).inputs["template"]["containers"][0]["envs"]
        }
        # The runtime account's agent role is bootstrap's: the program grants nothing new.
        assert [r.type for r in on.resources] == [r.type for r in off.resources]
