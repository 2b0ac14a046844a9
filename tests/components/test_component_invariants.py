"""Invariants of the program, checked on the plan of every committed stack.

Each class is one property a reviewer fluent in GCP would check by hand; the
expected values come from the stack files and contract names, never from the
code under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from contract.names import (
    HEALTH_ROUTE,
    MAP_STACK_OUTPUT_KEYS,
    OPTIONAL_STACK_OUTPUT_KEYS,
    OUTPUT_AUDIENCE,
    OUTPUT_INVOKER_EMAIL,
    OUTPUT_QUEUE,
    OUTPUT_SERVICE_URL,
    STACK_OUTPUT_KEYS,
    WORKER_ENV_ALLOWED_INVOKERS,
    WORKER_ENV_AUDIENCE,
)
from contract.resources import (
    IMAGE_TYPE,
    PROJECT_IAM_MEMBER_TYPE,
    PROJECT_SERVICE_TYPE,
    QUEUE_IAM_MEMBER_TYPE,
    QUEUE_TYPE,
    RUN_SERVICE_IAM_MEMBER_TYPE,
    RUN_SERVICE_TYPE,
    SERVICE_ACCOUNT_IAM_MEMBER_TYPE,
    SERVICE_ACCOUNT_TYPE,
    SERVICE_IDENTITY_TYPE,
)
from plan.mocks import project_number
from plan.model import Plan

IAM_TYPES = (
    QUEUE_IAM_MEMBER_TYPE,
    RUN_SERVICE_IAM_MEMBER_TYPE,
    SERVICE_ACCOUNT_IAM_MEMBER_TYPE,
    PROJECT_IAM_MEMBER_TYPE,
)
# What bootstrap/ creates before the first deploy, and the program must not.
FOUNDATION_TYPES = (
    PROJECT_SERVICE_TYPE,
    SERVICE_IDENTITY_TYPE,
    SERVICE_ACCOUNT_TYPE,
    "gcp:artifactregistry/repository:Repository",
    PROJECT_IAM_MEMBER_TYPE,
)


@dataclass(frozen=True)
class Account:
    """A pipeline account as Google names it (written out here, not imported)."""

    email: str
    name: str
    member: str


def account(stack_config: dict[str, Any], suffix: str) -> Account:
    prefix = stack_config.get("account_prefix", "tasks")
    project = stack_config["gcp:project"]
    email = f"{prefix}{suffix}@{project}.iam.gserviceaccount.com"
    return Account(email, f"projects/{project}/serviceAccounts/{email}", f"serviceAccount:{email}")


def all_strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from all_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from all_strings(v)
    elif isinstance(value, str):
        yield value


def env_of(plan: Plan) -> dict[str, str]:
    container = plan.one(RUN_SERVICE_TYPE).inputs["template"]["containers"][0]
    # Secret entries (worker_secrets) have a valueSource instead of a value.
    return {e["name"]: e["value"] for e in container["envs"] if "value" in e}


class TestOnlyTheInvokerMayInvoke:
    def test_the_single_run_invoker_member_is_the_invoker_account(
        self, plan: Plan, stack_config: dict[str, Any]
    ) -> None:
        invoker = account(stack_config, "-invoker")
        bindings = [
            r
            for r in plan.resources
            if r.type in IAM_TYPES and r.inputs["role"] == "roles/run.invoker"
        ]
        assert [b.inputs["member"] for b in bindings] == [invoker.member]
        assert bindings[0].type == RUN_SERVICE_IAM_MEMBER_TYPE
        assert bindings[0].inputs["name"] == plan.one(RUN_SERVICE_TYPE).inputs["name"]

    def test_the_invoker_has_no_other_grant(self, plan: Plan, stack_config: dict[str, Any]) -> None:
        invoker = account(stack_config, "-invoker").member
        roles = [
            r.inputs["role"]
            for r in plan.resources
            if r.type in IAM_TYPES and r.inputs["member"] == invoker
        ]
        assert roles == ["roles/run.invoker"]

    def test_the_service_stays_private(self, plan: Plan) -> None:
        service = plan.one(RUN_SERVICE_TYPE).inputs
        assert service["invokerIamDisabled"] is False
        assert service["defaultUriDisabled"] is False  # Cloud Tasks calls the run.app URL

    def test_nobody_public_anywhere(self, plan: Plan) -> None:
        for resource in plan.resources:
            strings = set(all_strings(resource.inputs))
            assert not strings & {"allUsers", "allAuthenticatedUsers"}, resource.urn


class TestSeparateRuntimeIdentity:
    def test_the_service_runs_as_the_runtime_account_not_the_invoker(
        self, plan: Plan, stack_config: dict[str, Any]
    ) -> None:
        template = plan.one(RUN_SERVICE_TYPE).inputs["template"]
        assert template["serviceAccount"] == account(stack_config, "-runtime").email
        assert template["serviceAccount"] != account(stack_config, "-invoker").email

    def test_the_runtime_account_has_no_grant_at_all(
        self, plan: Plan, stack_config: dict[str, Any]
    ) -> None:
        # Cloud Run ships stdout/stderr logs and request metrics itself; secrets, when
        # configured, are granted on each secret (TestSecrets in test_component_worker_env).
        runtime = account(stack_config, "-runtime").member
        grants = [
            r.type for r in plan.resources if r.type in IAM_TYPES and r.inputs["member"] == runtime
        ]
        assert grants == []

    def test_no_authoritative_bindings_or_policies(self, plan: Plan) -> None:
        for resource in plan.resources:
            assert not resource.type.endswith(
                ("IAMBinding", "IamBinding", "IAMPolicy", "IamPolicy")
            ), resource.urn


class TestEnqueuers:
    @staticmethod
    def expected_enqueuers(plan: Plan, stack_config: dict[str, Any]) -> set[str]:
        configured = stack_config.get("enqueuers") or []
        if configured:
            return set(configured)
        return {account(stack_config, "-enqueuer").member}

    def test_each_enqueuer_may_enqueue_on_the_queue_only(
        self, plan: Plan, stack_config: dict[str, Any]
    ) -> None:
        queue_name = plan.one(QUEUE_TYPE).outputs["name"]
        grants = {
            (r.inputs["member"], r.inputs["role"]) for r in plan.of_type(QUEUE_IAM_MEMBER_TYPE)
        }
        expected = self.expected_enqueuers(plan, stack_config)
        # Not roles/cloudtasks.viewer: it reads every task's body (tasks.fullView).
        assert grants == {(m, "roles/cloudtasks.enqueuer") for m in expected}
        assert {r.inputs["name"] for r in plan.of_type(QUEUE_IAM_MEMBER_TYPE)} == {queue_name}

    def test_each_enqueuer_may_act_as_the_invoker_and_nothing_else(
        self, plan: Plan, stack_config: dict[str, Any]
    ) -> None:
        invoker = account(stack_config, "-invoker")
        grants = {
            (r.inputs["member"], r.inputs["role"], r.inputs["serviceAccountId"])
            for r in plan.of_type(SERVICE_ACCOUNT_IAM_MEMBER_TYPE)
        }
        assert grants == {
            (m, "roles/iam.serviceAccountUser", invoker.name)
            for m in self.expected_enqueuers(plan, stack_config)
        }

    def test_enqueuers_have_nothing_project_wide(
        self, plan: Plan, stack_config: dict[str, Any]
    ) -> None:
        project_members = {r.inputs["member"] for r in plan.of_type(PROJECT_IAM_MEMBER_TYPE)}
        assert not project_members & self.expected_enqueuers(plan, stack_config)


def seconds(value: Any) -> str:
    text = str(value)
    units = {"s": 1, "m": 60, "h": 3600}
    if text[-1] in units:
        return f"{int(text[:-1]) * units[text[-1]]}s"
    return f"{int(text)}s"


class TestQueueMatchesTheStackFile:
    def test_rate_limits(self, plan: Plan, stack_config: dict[str, Any]) -> None:
        rate = plan.one(QUEUE_TYPE).inputs["rateLimits"]
        assert rate["maxDispatchesPerSecond"] == stack_config["max_dispatches_per_second"]
        assert rate["maxConcurrentDispatches"] == stack_config["max_concurrent_dispatches"]

    def test_retry_config(self, plan: Plan, stack_config: dict[str, Any]) -> None:
        retry = plan.one(QUEUE_TYPE).inputs["retryConfig"]
        assert retry["maxAttempts"] == stack_config["max_attempts"]
        assert retry["maxDoublings"] == stack_config["max_doublings"]
        for field in ("min_backoff", "max_backoff", "max_retry_duration"):
            camel = "".join(w if i == 0 else w.title() for i, w in enumerate(field.split("_")))
            assert retry[camel] == seconds(stack_config[field]), field

    def test_logging_state_and_name(self, plan: Plan, stack_config: dict[str, Any]) -> None:
        queue = plan.one(QUEUE_TYPE)
        assert (
            queue.inputs["stackdriverLoggingConfig"]["samplingRatio"]
            == stack_config["log_sampling_ratio"]
        )
        paused = stack_config.get("queue_paused", False)
        assert queue.inputs["desiredState"] == ("PAUSED" if paused else "RUNNING")
        if "queue_name" in stack_config:
            assert queue.inputs["name"] == stack_config["queue_name"]
        else:
            assert "name" not in queue.inputs  # auto-named: no 7-day reuse block on replace

    def test_queue_level_target_follows_the_flag(
        self, plan: Plan, stack_config: dict[str, Any]
    ) -> None:
        target = plan.one(QUEUE_TYPE).inputs.get("httpTarget")
        if not stack_config.get("queue_http_target", False):
            assert target is None
            return
        assert target is not None, "queue_http_target is on but the queue has no httpTarget"
        service_host = plan.one(RUN_SERVICE_TYPE).outputs["uri"].removeprefix("https://")
        assert target["uriOverride"] == {
            "scheme": "HTTPS",
            "host": service_host,
            "uriOverrideEnforceMode": "ALWAYS",
        }
        assert target["oidcToken"]["serviceAccountEmail"] == account(stack_config, "-invoker").email

    def test_queue_output_is_the_queue_path(self, plan: Plan, stack_config: dict[str, Any]) -> None:
        queue = plan.one(QUEUE_TYPE)
        assert (
            plan.outputs[OUTPUT_QUEUE]
            == queue.outputs["id"]
            == (
                f"projects/{stack_config['gcp:project']}/locations/{stack_config['gcp:region']}"
                f"/queues/{queue.outputs['name']}"
            )
        )


class TestOneAudienceEverywhere:
    def test_audience_is_the_deterministic_url_or_the_custom_audience(
        self, plan: Plan, stack_config: dict[str, Any]
    ) -> None:
        project, region = stack_config["gcp:project"], stack_config["gcp:region"]
        name = stack_config.get("service_name", "tasks-worker")
        expected = stack_config.get(
            "custom_audience", f"https://{name}-{project_number(project)}.{region}.run.app"
        )
        assert plan.outputs[OUTPUT_AUDIENCE] == expected

    def test_the_worker_expects_the_very_audience_tasks_carry(self, plan: Plan) -> None:
        audience = plan.outputs[OUTPUT_AUDIENCE]
        assert env_of(plan)[WORKER_ENV_AUDIENCE] == audience
        target = plan.one(QUEUE_TYPE).inputs.get("httpTarget")
        if target is not None:
            assert target["oidcToken"]["audience"] == audience

    def test_the_worker_allows_exactly_the_invoker(
        self, plan: Plan, stack_config: dict[str, Any]
    ) -> None:
        invoker = account(stack_config, "-invoker").email
        assert env_of(plan)[WORKER_ENV_ALLOWED_INVOKERS] == invoker
        assert plan.outputs[OUTPUT_INVOKER_EMAIL] == invoker

    def test_audience_is_a_bare_origin(self, plan: Plan) -> None:
        audience = str(plan.outputs[OUTPUT_AUDIENCE])
        assert audience.startswith("https://")
        assert "/" not in audience.removeprefix("https://").rstrip("/")


class TestDeletionProtection:
    def test_follows_the_stack_file(
        self, plan: Plan, stack: str, stack_config: dict[str, Any]
    ) -> None:
        assert (
            plan.one(RUN_SERVICE_TYPE).inputs["deletionProtection"]
            is stack_config["deletion_protection"]
        )

    def test_off_in_dev_on_in_prod(self, all_plans: dict[str, Plan]) -> None:
        assert all_plans["dev"].one(RUN_SERVICE_TYPE).inputs["deletionProtection"] is False
        assert all_plans["prod"].one(RUN_SERVICE_TYPE).inputs["deletionProtection"] is True


class TestFoundationIsBootstraps:
    """APIs, the Cloud Tasks agent, the accounts and the repository are created by
    bootstrap/ minutes before the first deploy (tests/bootstrap checks them): API
    enablement is eventually consistent, and the deployer holds no project-wide
    service-usage, service-account or IAM admin to create them."""

    def test_the_program_creates_none_of_the_foundation(self, plan: Plan) -> None:
        assert not [r.urn for r in plan.resources if r.type in FOUNDATION_TYPES]

    def test_nothing_is_granted_at_project_level(self, plan: Plan) -> None:
        assert not plan.of_type(PROJECT_IAM_MEMBER_TYPE)


class TestComponentShape:
    def test_type_tokens_and_nesting(self, plan: Plan) -> None:
        components = {r.type: r for r in plan.resources if r.is_component}
        assert set(components) == {
            f"tasks:index:{n}"
            for n in (
                "TaskPipeline",
                "Identities",
                "TaskQueue",
                "WorkerService",
                "DeadLetterBucket",
                "Operations",
            )
        }
        root = components["tasks:index:TaskPipeline"]
        assert root.parent is None
        assert all(c.parent == root.urn for t, c in components.items() if c is not root)

    def test_children_are_named_from_their_parent(self, plan: Plan) -> None:
        for resource in plan.resources:
            if resource.parent is not None:
                parent = plan.by_urn(resource.parent)
                assert resource.name.startswith(f"{parent.name}-"), resource.urn
            else:
                assert resource.is_component, f"{resource.urn} is not inside a component"


class TestWorkerContainer:
    def test_command_port_and_probe(self, plan: Plan) -> None:
        container = plan.one(RUN_SERVICE_TYPE).inputs["template"]["containers"][0]
        assert container["commands"] == ["python", "-m", "service"]
        assert container["ports"]["containerPort"] == 8080
        assert container["startupProbe"]["httpGet"] == {"path": HEALTH_ROUTE, "port": 8080}
        assert "PORT" not in env_of(plan)  # Cloud Run reserves and sets it

    def test_scaling_and_resources_follow_the_stack_file(
        self, plan: Plan, stack_config: dict[str, Any]
    ) -> None:
        template = plan.one(RUN_SERVICE_TYPE).inputs["template"]
        assert template["timeout"] == seconds(stack_config["request_timeout"])
        assert template["maxInstanceRequestConcurrency"] == stack_config["request_concurrency"]
        assert template["scaling"] == {
            "minInstanceCount": stack_config["min_instances"],
            "maxInstanceCount": stack_config["max_instances"],
        }
        limits = template["containers"][0]["resources"]["limits"]
        assert limits == {"cpu": str(stack_config["cpu"]), "memory": stack_config["memory"]}
        ingress = stack_config.get("ingress", "INGRESS_TRAFFIC_ALL")
        assert plan.one(RUN_SERVICE_TYPE).inputs["ingress"] == ingress

    def test_image_is_built_for_cloud_run_and_never_on_preview(
        self, plan: Plan, stack: str, stack_config: dict[str, Any]
    ) -> None:
        image = plan.one(IMAGE_TYPE).inputs
        registry = (
            f"{stack_config['gcp:region']}-docker.pkg.dev/{stack_config['gcp:project']}/"
            f"{stack_config.get('repository_id', 'tasks')}"
        )
        assert image["push"] is True
        assert image["buildOnPreview"] is False
        assert image["platforms"] == ["linux/amd64"]
        assert image["context"] == {"location": "."}
        assert image["dockerfile"] == {"location": "service/Dockerfile"}
        assert image["tags"] == [f"{registry}/worker:{stack}"]
        # Destroy forgets the image: its stored push token has long expired by then.
        assert plan.one(IMAGE_TYPE).retain_on_delete is True
        assert image["registries"] == "[secret]"  # the deployer's access token stays secret
        container = plan.one(RUN_SERVICE_TYPE).inputs["template"]["containers"][0]
        assert container["image"] == plan.one(IMAGE_TYPE).outputs["ref"]


class TestStackOutputs:
    def test_names_and_values(self, plan: Plan, stack_config: dict[str, Any]) -> None:
        assert tuple(plan.outputs) == (
            *STACK_OUTPUT_KEYS,
            *OPTIONAL_STACK_OUTPUT_KEYS,
            *MAP_STACK_OUTPUT_KEYS,
        )
        # The deadline the tasks get is the one request_timeout was checked against.
        assert plan.outputs["dispatch_deadline"] == seconds(stack_config["dispatch_deadline"])
        # A single-queue stack file: one queue, `default`, and no route.
        assert plan.outputs["queues"] == {"default": plan.outputs["queue"]}
        assert plan.outputs["routes"] == {}
        assert plan.outputs["dispatch_deadlines"] == {"default": plan.outputs["dispatch_deadline"]}
        assert plan.outputs["project"] == stack_config["gcp:project"]
        assert plan.outputs["location"] == stack_config["gcp:region"]
        assert plan.outputs[OUTPUT_SERVICE_URL] == plan.one(RUN_SERVICE_TYPE).outputs["uri"]


def test_the_queue_is_protected_where_the_service_is(
    plan: Plan, stack_config: dict[str, Any]
) -> None:
    """A deleted queue takes its tasks with it and blocks its name for days: the stack's
    deletion_protection protects it (Pulumi `protect`) as it protects the service."""
    protected = stack_config.get("deletion_protection", True) not in (False, "false")
    assert plan.one(QUEUE_TYPE).protect is protected
    assert plan.one(RUN_SERVICE_TYPE).inputs["deletionProtection"] is protected
