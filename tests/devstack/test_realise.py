"""What each resource of the real plans becomes locally (no processes started)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from google.cloud import tasks_v2

from contract.names import (
    OUTPUT_INVOKER_EMAIL,
    OUTPUT_QUEUE,
    OUTPUT_QUEUES,
    OUTPUT_ROUTES,
    WORKER_ENV_ALLOWED_INVOKERS,
    WORKER_ENV_AUDIENCE,
    WORKER_ENV_CERTS_URL,
)
from contract.resources import QUEUE_TYPE, RUN_SERVICE_IAM_MEMBER_TYPE, RUN_SERVICE_TYPE
from devstack.realise import NOBODY_INVOKER, LocalRealisation, PlanNotRealisable, analyse
from plan.engine import evaluate
from plan.model import Plan
from plan.stack_config import available_stacks
from tests.stack_files import THREE_QUEUES, plan_of


def realise(data: dict[str, Any]) -> LocalRealisation:
    """The verdicts on a plan given as JSON data (tests mutate copies of it)."""
    return analyse(Plan.from_json(data))


def _one(plan: dict[str, Any], rtype: str) -> dict[str, Any]:
    [resource] = [r for r in plan["resources"] if r["type"] == rtype]
    found: dict[str, Any] = resource
    return found


def _mutated(plan: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(plan)


class TestEveryResourceHasAVerdict:
    @pytest.mark.parametrize("stack", available_stacks())
    def test_each_stack_realises_with_one_verdict_per_resource(self, stack: str) -> None:
        plan = evaluate(stack).to_json()
        realisation = realise(plan)
        assert [v.urn for v in realisation.verdicts] == [r["urn"] for r in plan["resources"]]
        assert not realisation.by_verdict("refused")

    def test_the_runtime_parts_are_realised_and_cloud_only_parts_are_listed(
        self, dev_plan: dict[str, Any]
    ) -> None:
        realisation = realise(dev_plan)
        realised = {v.type for v in realisation.by_verdict("realised")}
        assert {QUEUE_TYPE, RUN_SERVICE_TYPE, RUN_SERVICE_IAM_MEMBER_TYPE} <= realised
        no_effect = {v.type for v in realisation.by_verdict("no local effect")}
        assert {"docker-build:index:Image", "gcp:serviceaccount/iAMMember:IAMMember"} <= no_effect
        assert all(v.detail for v in realisation.verdicts)

    def test_an_unknown_resource_type_is_refused_with_the_fix(
        self, dev_plan: dict[str, Any]
    ) -> None:
        plan = _mutated(dev_plan)
        extra = copy.deepcopy(_one(plan, QUEUE_TYPE))
        extra.update(type="gcp:pubsub/topic:Topic", name="events", urn="urn:x::events")
        plan["resources"].append(extra)
        with pytest.raises(PlanNotRealisable) as info:
            realise(plan)
        message = str(info.value)
        assert "gcp:pubsub/topic:Topic" in message
        assert "devstack/realise.py" in message


class TestQueue:
    def test_queue_message_has_exactly_the_planned_settings(self, dev_plan: dict[str, Any]) -> None:
        planned = _one(dev_plan, QUEUE_TYPE)
        inputs = planned["inputs"]
        queue = realise(dev_plan).queue.to_queue("127.0.0.1", 4321)
        assert queue.name == planned["outputs"]["id"] == dev_plan["outputs"][OUTPUT_QUEUE]
        rate, retry = inputs["rateLimits"], inputs["retryConfig"]
        assert queue.rate_limits.max_dispatches_per_second == rate["maxDispatchesPerSecond"]
        assert queue.rate_limits.max_concurrent_dispatches == rate["maxConcurrentDispatches"]
        assert queue.retry_config.max_attempts == retry["maxAttempts"]
        assert queue.retry_config.max_doublings == retry["maxDoublings"]
        for field in ("minBackoff", "maxBackoff", "maxRetryDuration"):
            snake = {"minBackoff": "min_backoff", "maxBackoff": "max_backoff"}.get(
                field, "max_retry_duration"
            )
            seconds = getattr(queue.retry_config, snake).total_seconds()
            assert f"{seconds:g}s" == retry[field]

    def test_uri_override_points_at_the_local_worker_and_keeps_the_path(
        self, dev_plan: dict[str, Any]
    ) -> None:
        plan = _mutated(dev_plan)
        _one(plan, QUEUE_TYPE)["inputs"]["httpTarget"] = {
            "httpMethod": "POST",
            "uriOverride": {
                "scheme": "HTTPS",
                "host": "tasks-worker-1.europe-west1.run.app",
                "port": "443",
                "pathOverride": {"path": "/tasks/smoke"},
                "uriOverrideEnforceMode": "ALWAYS",
            },
            "oidcToken": {"serviceAccountEmail": "inv@p.iam.gserviceaccount.com", "audience": "a"},
        }
        realisation = realise(plan)
        target = realisation.queue.to_queue("127.0.0.1", 4321).http_target
        assert target.uri_override.scheme == tasks_v2.UriOverride.Scheme.HTTP
        assert (target.uri_override.host, target.uri_override.port) == ("127.0.0.1", 4321)
        assert target.uri_override.path_override.path == "/tasks/smoke"
        mode = tasks_v2.UriOverride.UriOverrideEnforceMode.ALWAYS
        assert target.uri_override.uri_override_enforce_mode == mode
        assert target.oidc_token.service_account_email == "inv@p.iam.gserviceaccount.com"
        assert any("uriOverride" in s for s in realisation.substitutions)

    def test_a_queue_output_that_is_not_the_queue_is_refused(
        self, dev_plan: dict[str, Any]
    ) -> None:
        plan = _mutated(dev_plan)
        plan["outputs"][OUTPUT_QUEUE] = "projects/p/locations/l/queues/other"
        with pytest.raises(PlanNotRealisable, match="export the default queue's id"):
            realise(plan)

    def test_oauth_token_target_is_refused(self, dev_plan: dict[str, Any]) -> None:
        plan = _mutated(dev_plan)
        _one(plan, QUEUE_TYPE)["inputs"]["httpTarget"] = {
            "oauthToken": {"serviceAccountEmail": "x@p.iam.gserviceaccount.com"}
        }
        with pytest.raises(PlanNotRealisable, match="use oidcToken"):
            realise(plan)


class TestWorker:
    def _env(self, plan: dict[str, Any]) -> dict[str, str]:
        return realise(plan).worker.process_env(
            host="127.0.0.1", port=9999, certs_url="http://127.0.0.1:1/oauth2/v1/certs"
        )

    def test_planned_envs_plus_local_wiring(self, dev_plan: dict[str, Any]) -> None:
        service = _one(dev_plan, RUN_SERVICE_TYPE)
        container = service["inputs"]["template"]["containers"][0]
        env = self._env(dev_plan)
        for item in container["envs"]:
            if item["name"] != WORKER_ENV_ALLOWED_INVOKERS:
                assert env[item["name"]] == item["value"]
        assert env[WORKER_ENV_AUDIENCE] == dev_plan["outputs"]["audience"]
        assert env["PORT"] == "9999"
        assert env["HOST"] == "127.0.0.1"
        assert env[WORKER_ENV_CERTS_URL] == "http://127.0.0.1:1/oauth2/v1/certs"
        assert env["GOOGLE_CLOUD_PROJECT"] == dev_plan["outputs"]["project"]
        command = realise(dev_plan).worker.command
        assert command[1:] == container["commands"][1:] + container.get("args", [])

    def test_allowed_invokers_are_exactly_the_run_invoker_members(
        self, dev_plan: dict[str, Any]
    ) -> None:
        member = _one(dev_plan, RUN_SERVICE_IAM_MEMBER_TYPE)["inputs"]["member"]
        assert member == f"serviceAccount:{dev_plan['outputs'][OUTPUT_INVOKER_EMAIL]}"
        env = self._env(dev_plan)
        assert env[WORKER_ENV_ALLOWED_INVOKERS] == dev_plan["outputs"][OUTPUT_INVOKER_EMAIL]

    def test_a_wrong_binding_lets_the_invoker_no_longer_in(self, dev_plan: dict[str, Any]) -> None:
        plan = _mutated(dev_plan)
        binding = _one(plan, RUN_SERVICE_IAM_MEMBER_TYPE)["inputs"]
        binding["member"] = "serviceAccount:someone-else@my-tasks-dev.iam.gserviceaccount.com"
        # The program's own allow-list still names the invoker: in the cloud the
        # IAM check runs first and rejects it, so locally nobody may invoke.
        env = self._env(plan)
        assert env[WORKER_ENV_ALLOWED_INVOKERS] == NOBODY_INVOKER
        assert dev_plan["outputs"][OUTPUT_INVOKER_EMAIL] not in env[WORKER_ENV_ALLOWED_INVOKERS]

    def test_without_program_allow_list_the_binding_alone_decides(
        self, dev_plan: dict[str, Any]
    ) -> None:
        plan = _mutated(dev_plan)
        container = _one(plan, RUN_SERVICE_TYPE)["inputs"]["template"]["containers"][0]
        container["envs"] = [
            e for e in container["envs"] if e["name"] != WORKER_ENV_ALLOWED_INVOKERS
        ]
        _one(plan, RUN_SERVICE_IAM_MEMBER_TYPE)["inputs"]["member"] = "serviceAccount:b@p.iam.x.com"
        assert self._env(plan)[WORKER_ENV_ALLOWED_INVOKERS] == "b@p.iam.x.com"

    def test_invoker_iam_disabled_turns_the_iam_layer_off(self, dev_plan: dict[str, Any]) -> None:
        plan = _mutated(dev_plan)
        service = _one(plan, RUN_SERVICE_TYPE)["inputs"]
        service["invokerIamDisabled"] = True
        container = service["template"]["containers"][0]
        container["envs"] = [
            e for e in container["envs"] if e["name"] != WORKER_ENV_ALLOWED_INVOKERS
        ]
        env = self._env(plan)
        assert WORKER_ENV_ALLOWED_INVOKERS not in env
        assert WORKER_ENV_AUDIENCE not in env  # the worker refuses an audience alone

    def test_group_member_is_refused(self, dev_plan: dict[str, Any]) -> None:
        plan = _mutated(dev_plan)
        _one(plan, RUN_SERVICE_IAM_MEMBER_TYPE)["inputs"]["member"] = "group:ops@example.com"
        with pytest.raises(PlanNotRealisable, match="serviceAccount:EMAIL"):
            realise(plan)

    def test_secret_env_is_refused(self, dev_plan: dict[str, Any]) -> None:
        plan = _mutated(dev_plan)
        container = _one(plan, RUN_SERVICE_TYPE)["inputs"]["template"]["containers"][0]
        container["envs"].append(
            {"name": "API_KEY", "valueSource": {"secretKeyRef": {"secret": "k"}}}
        )
        with pytest.raises(PlanNotRealisable, match="API_KEY comes from Secret Manager"):
            realise(plan)

    def test_missing_invoker_output_is_refused(self, dev_plan: dict[str, Any]) -> None:
        plan = _mutated(dev_plan)
        del plan["outputs"][OUTPUT_INVOKER_EMAIL]
        with pytest.raises(PlanNotRealisable, match="invoker_email"):
            realise(plan)


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The plan of tests/stacks/Pulumi.three-queues.yaml."""
    return plan_of(THREE_QUEUES, tmp_path_factory.mktemp("project")).to_json()


class TestSeveralQueues:
    def test_every_queue_is_realised_by_its_key_with_its_own_settings(
        self, three: dict[str, Any]
    ) -> None:
        realisation = realise(three)
        assert list(realisation.queues) == ["default", "email", "reports"]
        assert realisation.queue is realisation.queues["default"]
        rates = {
            key: spec.to_queue("127.0.0.1", 4321).rate_limits.max_dispatches_per_second
            for key, spec in realisation.queues.items()
        }
        assert rates == {"default": 5, "email": 2, "reports": 1}
        assert realisation.outputs[OUTPUT_QUEUES] == three["outputs"][OUTPUT_QUEUES]
        assert isinstance(realisation.outputs[OUTPUT_ROUTES], dict)

    def test_a_queue_without_a_key_is_refused(self, three: dict[str, Any]) -> None:
        plan = _mutated(three)
        del plan["outputs"][OUTPUT_QUEUES]["email"]
        with pytest.raises(PlanNotRealisable, match="has no key in the `queues` output"):
            realise(plan)

    def test_a_plan_from_before_several_queues_is_one_default_queue(
        self, dev_plan: dict[str, Any]
    ) -> None:
        plan = _mutated(dev_plan)
        for key in (OUTPUT_QUEUES, OUTPUT_ROUTES, "dispatch_deadlines"):
            del plan["outputs"][key]
        realisation = realise(plan)
        assert list(realisation.queues) == ["default"]
        assert realisation.queue.path == plan["outputs"][OUTPUT_QUEUE]
