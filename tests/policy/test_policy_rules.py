"""Every policy rule stays quiet on every stack's plan and fires on a mutated copy.

The rules run from the main venv (policy/rules.py imports neither pulumi nor
pulumi_policy); the same functions are served by the pack, which
test_policy_pack.py checks through pulumi_policy itself.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from contract.resources import RUN_INVOKER_ROLE
from plan.errors import PlanFormatError
from plan.model import Plan
from policy.rules import (
    QUEUE,
    RULE_NAMES,
    RUN_SERVICE,
    RUN_SERVICE_IAM_MEMBER,
    PolicyInputError,
    Violation,
    check_plan,
    dispatch_deadline_from_config,
    parse_duration_s,
)
from tests.policy.policy_plans import STACKS, deadline, load_plan, mutated, resources_of

PlanData = dict[str, Any]


def set_prop(resource: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set a (nested) property in both inputs and outputs, as a changed program would."""
    for side in ("inputs", "outputs"):
        target = resource.setdefault(side, {})
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value


def del_prop(resource: dict[str, Any], path: tuple[str, ...]) -> None:
    for side in ("inputs", "outputs"):
        target = resource.get(side) or {}
        for key in path[:-1]:
            target = target.get(key) or {}
        target.pop(path[-1], None)


def invoker_grant(plan: PlanData) -> dict[str, Any]:
    grants = [
        r
        for r in resources_of(plan, RUN_SERVICE_IAM_MEMBER)
        if r["inputs"]["role"] == RUN_INVOKER_ROLE
    ]
    assert grants, "no run.invoker grant in the plan"
    return grants[0]


def add_resource(plan: PlanData, type_: str, name: str, inputs: dict[str, Any]) -> None:
    plan["resources"].append(
        {
            "urn": f"urn:pulumi:{plan['stack']}::{plan['project']}::{type_}::{name}",
            "type": type_,
            "name": name,
            "parent": None,
            "dependencies": [],
            "provider": None,
            "inputs": inputs,
            "outputs": dict(inputs),
        }
    )


def rules_fired(violations: list[Violation]) -> set[str]:
    return {v.rule for v in violations}


class TestRealStacksAreCompliant:
    @pytest.mark.parametrize("stack", STACKS)
    def test_no_rule_fires_on_the_stack_plan(self, stack: str) -> None:
        plan = load_plan(stack)
        assert plan["stack"] == stack
        violations = check_plan(Plan.from_json(plan), stack, deadline(stack))
        assert violations == [], "\n".join(f"{v.rule}: {v.message}" for v in violations)

    @pytest.mark.parametrize("stack", STACKS)
    def test_the_plan_has_what_the_rules_look_at(self, stack: str) -> None:
        # A plan without these would make "no violation" above meaningless.
        plan = load_plan(stack)
        for type_ in (QUEUE, RUN_SERVICE, RUN_SERVICE_IAM_MEMBER):
            assert resources_of(plan, type_)


# Each mutation breaks one rule in the prod plan; (rule, message fragment, mutate).
Mutation = Callable[[PlanData], None]


def _public_member(plan: PlanData) -> None:
    set_prop(invoker_grant(plan), ("member",), "allUsers")


def _public_binding(plan: PlanData) -> None:
    service = resources_of(plan, RUN_SERVICE)[0]["inputs"]
    add_resource(
        plan,
        "gcp:cloudrunv2/serviceIamBinding:ServiceIamBinding",
        "open-binding",
        {
            "name": service.get("name", "svc"),
            "role": RUN_INVOKER_ROLE,
            "members": ["allAuthenticatedUsers"],
        },
    )


def _public_policy(plan: PlanData) -> None:
    add_resource(
        plan,
        "gcp:cloudrunv2/serviceIamPolicy:ServiceIamPolicy",
        "open-policy",
        {
            "name": "tasks-worker",
            "policyData": '{"bindings":[{"role":"roles/run.invoker","members":["allUsers"]}]}',
        },
    )


def _iam_disabled(plan: PlanData) -> None:
    set_prop(resources_of(plan, RUN_SERVICE)[0], ("invokerIamDisabled",), True)


def _user_invoker(plan: PlanData) -> None:
    set_prop(invoker_grant(plan), ("member",), "user:alice@example.com")


def _group_invoker_binding(plan: PlanData) -> None:
    add_resource(
        plan,
        "gcp:cloudrunv2/serviceIamBinding:ServiceIamBinding",
        "group-binding",
        {"name": "tasks-worker", "role": RUN_INVOKER_ROLE, "members": ["group:devs@example.com"]},
    )


def _unlimited_attempts(plan: PlanData) -> None:
    set_prop(resources_of(plan, QUEUE)[0], ("retryConfig", "maxAttempts"), -1)


def _unlimited_attempts_with_duration(plan: PlanData) -> None:
    queue = resources_of(plan, QUEUE)[0]
    set_prop(queue, ("retryConfig", "maxAttempts"), -1)
    set_prop(queue, ("retryConfig", "maxRetryDuration"), "3600s")


def _no_retry_config(plan: PlanData) -> None:
    del_prop(resources_of(plan, QUEUE)[0], ("retryConfig",))


def _rate_too_high(plan: PlanData) -> None:
    set_prop(resources_of(plan, QUEUE)[0], ("rateLimits", "maxDispatchesPerSecond"), 501)


def _rate_zero(plan: PlanData) -> None:
    set_prop(resources_of(plan, QUEUE)[0], ("rateLimits", "maxDispatchesPerSecond"), 0)


def _rate_unset(plan: PlanData) -> None:
    del_prop(resources_of(plan, QUEUE)[0], ("rateLimits", "maxDispatchesPerSecond"))


def _concurrency_too_high(plan: PlanData) -> None:
    set_prop(resources_of(plan, QUEUE)[0], ("rateLimits", "maxConcurrentDispatches"), 5001)


def _project_binding(plan: PlanData) -> None:
    add_resource(
        plan,
        "gcp:projects/iAMBinding:IAMBinding",
        "writers",
        {"project": "demo", "role": "roles/logging.logWriter", "members": ["user:a@example.com"]},
    )


def _queue_binding(plan: PlanData) -> None:
    add_resource(
        plan,
        "gcp:cloudtasks/queueIamBinding:QueueIamBinding",
        "enqueuers",
        {"name": "q", "role": "roles/cloudtasks.enqueuer", "members": ["serviceAccount:a@b.c"]},
    )


def _services_invoker(plan: PlanData) -> None:
    add_resource(
        plan,
        RUN_SERVICE_IAM_MEMBER,
        "invoker-bob",
        {
            "name": "tasks-worker",
            "role": "roles/run.servicesInvoker",
            "member": "user:bob@example.com",
        },
    )


def _project_policy(plan: PlanData) -> None:
    add_resource(
        plan, "gcp:projects/iAMPolicy:IAMPolicy", "all", {"project": "demo", "policyData": "{}"}
    )


def _deletion_unprotected(plan: PlanData) -> None:
    set_prop(resources_of(plan, RUN_SERVICE)[0], ("deletionProtection",), False)


def _short_timeout(plan: PlanData) -> None:
    set_prop(resources_of(plan, RUN_SERVICE)[0], ("template", "timeout"), "300s")


def _default_timeout(plan: PlanData) -> None:
    del_prop(resources_of(plan, RUN_SERVICE)[0], ("template", "timeout"))


def _unrouted_queue(plan: PlanData) -> None:
    # A second queue, `orphan`, that no route names (the stack's routes stay empty).
    queue = copy.deepcopy(resources_of(plan, QUEUE)[0])
    path = queue["outputs"]["id"].rsplit("/", 1)[0] + "/orphan-queue"
    queue["urn"] = queue["urn"].replace(queue["name"], "tasks-queue-orphan-queue")
    queue["name"] = "tasks-queue-orphan-queue"
    queue["outputs"].update(id=path, name="orphan-queue")
    plan["resources"].append(queue)
    plan["outputs"]["queues"] = {**plan["outputs"]["queues"], "orphan": path}


MUTATIONS: list[tuple[str, str, Mutation]] = [
    ("cloud-run-no-public-invoker", "granted to allUsers", _public_member),
    ("cloud-run-no-public-invoker", "granted to allAuthenticatedUsers", _public_binding),
    ("cloud-run-no-public-invoker", "granted to allUsers", _public_policy),
    ("cloud-run-invoker-iam-enabled", "invokerIamDisabled = true", _iam_disabled),
    ("cloud-run-invoker-service-accounts-only", "'user:alice@example.com'", _user_invoker),
    ("cloud-run-invoker-service-accounts-only", "'group:devs@example.com'", _group_invoker_binding),
    ("queue-bounded-retries", "retries failing tasks forever", _unlimited_attempts),
    ("queue-bounded-retries", "does not bound it", _unlimited_attempts_with_duration),
    ("queue-bounded-retries", "has no retryConfig", _no_retry_config),
    ("queue-dispatch-rate-within-limits", "maxDispatchesPerSecond = 501", _rate_too_high),
    ("queue-dispatch-rate-within-limits", "maxDispatchesPerSecond = 0", _rate_zero),
    ("queue-dispatch-rate-within-limits", "sets no rateLimits.maxDispatchesPerSecond", _rate_unset),
    ("queue-dispatch-rate-within-limits", "maxConcurrentDispatches = 5001", _concurrency_too_high),
    ("no-authoritative-iam", "authoritative for role roles/logging.logWriter", _project_binding),
    ("no-authoritative-iam", "authoritative for the whole IAM policy", _project_policy),
    ("no-authoritative-iam", "Use the non-authoritative QueueIamMember", _queue_binding),
    ("cloud-run-invoker-service-accounts-only", "'user:bob@example.com'", _services_invoker),
    (
        "prod-deletion-protection",
        "deletionProtection = false in stack 'prod'",
        _deletion_unprotected,
    ),
    ("cloud-run-timeout-covers-dispatch-deadline", "request timeout 300s", _short_timeout),
    ("cloud-run-timeout-covers-dispatch-deadline", "Cloud Run default 300s", _default_timeout),
    ("queue-reached-by-route", "queue 'orphan' is reached by no route", _unrouted_queue),
]


class TestEachRuleFires:
    def test_every_rule_has_a_mutation(self) -> None:
        assert {rule for rule, _, _ in MUTATIONS} == set(RULE_NAMES)

    @pytest.mark.parametrize(
        ("rule", "fragment", "mutate"),
        MUTATIONS,
        ids=[m.__name__.strip("_") for *_, m in MUTATIONS],
    )
    def test_the_mutation_fires_only_its_rule_with_its_message(
        self, rule: str, fragment: str, mutate: Mutation
    ) -> None:
        plan = mutated(load_plan("prod"))
        mutate(plan)
        violations = check_plan(Plan.from_json(plan), "prod", max(deadline("prod"), 600))
        # A Cloud Run IamBinding/IamPolicy is also authoritative: both rules speak.
        authoritative_run_iam = (_public_binding, _public_policy, _group_invoker_binding)
        also = {"no-authoritative-iam"} if mutate in authoritative_run_iam else set()
        assert rules_fired(violations) == {rule} | also, [v.message for v in violations]
        assert any(fragment in v.message for v in violations), [v.message for v in violations]
        # Every message tells how to fix it, and points at a resource.
        for violation in violations:
            assert any(
                word in violation.message
                for word in ("Set", "Use", "Grant", "Raise", "Remove", "use", "Choose", "accepts")
            )
            assert violation.urn
            assert violation.urn.startswith("urn:pulumi:prod::")


class TestRuleBoundaries:
    def test_deletion_protection_off_is_allowed_outside_prod(self) -> None:
        for stack in ("dev", "staging"):
            plan = mutated(load_plan(stack))
            _deletion_unprotected(plan)
            assert "prod-deletion-protection" not in rules_fired(
                check_plan(Plan.from_json(plan), stack, 600)
            )

    def test_unset_deletion_protection_is_the_provider_default_true(self) -> None:
        plan = mutated(load_plan("prod"))
        del_prop(resources_of(plan, RUN_SERVICE)[0], ("deletionProtection",))
        assert check_plan(Plan.from_json(plan), "prod", deadline("prod")) == []

    def test_rate_of_exactly_500_is_allowed(self) -> None:
        plan = mutated(load_plan("dev"))
        set_prop(resources_of(plan, QUEUE)[0], ("rateLimits", "maxDispatchesPerSecond"), 500)
        assert check_plan(Plan.from_json(plan), "dev", deadline("dev")) == []

    def test_max_retry_duration_alone_bounds_when_attempts_use_the_api_default(self) -> None:
        plan = mutated(load_plan("dev"))
        queue = resources_of(plan, QUEUE)[0]
        del_prop(queue, ("retryConfig", "maxAttempts"))
        set_prop(queue, ("retryConfig", "maxRetryDuration"), "3600s")
        assert check_plan(Plan.from_json(plan), "dev", deadline("dev")) == []

    def test_timeout_equal_to_the_deadline_is_enough(self) -> None:
        plan = mutated(load_plan("dev"))
        set_prop(resources_of(plan, RUN_SERVICE)[0], ("template", "timeout"), "900s")
        assert check_plan(Plan.from_json(plan), "dev", 900) == []
        violations = check_plan(Plan.from_json(plan), "dev", 901)
        assert rules_fired(violations) == {"cloud-run-timeout-covers-dispatch-deadline"}
        assert "dispatch deadline 901s" in violations[0].message

    def test_the_timeout_rule_needs_a_queue(self) -> None:
        plan = mutated(load_plan("dev"))
        plan["resources"] = [r for r in plan["resources"] if r["type"] != QUEUE]
        _short_timeout(plan)
        assert check_plan(Plan.from_json(plan), "dev", 1800) == []

    def test_run_invoker_to_a_service_account_in_a_binding_is_only_authoritative(self) -> None:
        plan = mutated(load_plan("prod"))
        add_resource(
            plan,
            "gcp:cloudrunv2/serviceIamBinding:ServiceIamBinding",
            "sa-binding",
            {"role": RUN_INVOKER_ROLE, "members": ["serviceAccount:x@p.iam.gserviceaccount.com"]},
        )
        # The invoker rules accept the member; only its authoritative form is refused.
        violations = check_plan(Plan.from_json(plan), "prod", deadline("prod"))
        assert rules_fired(violations) == {"no-authoritative-iam"}
        assert "Use the non-authoritative ServiceIamMember" in violations[0].message

    def test_member_resources_are_not_authoritative(self) -> None:
        plan = mutated(load_plan("prod"))
        add_resource(
            plan,
            "gcp:cloudtasks/queueIamMember:QueueIamMember",
            "another-enqueuer",
            {"role": "roles/cloudtasks.enqueuer", "member": "serviceAccount:a@b.iam.x.com"},
        )
        assert check_plan(Plan.from_json(plan), "prod", deadline("prod")) == []


class TestInputs:
    @pytest.mark.parametrize(
        ("text", "seconds"), [("600s", 600), ("10m", 600), ("1h", 3600), (90, 90), ("3.5s", 3.5)]
    )
    def test_durations(self, text: object, seconds: float) -> None:
        assert parse_duration_s(text, "x") == seconds

    def test_a_bad_duration_says_how_to_write_it(self) -> None:
        with pytest.raises(
            PolicyInputError,
            match=r"template.timeout: cannot read .ten minutes. as a duration; write it like 30s",
        ):
            parse_duration_s("ten minutes", "template.timeout")

    def test_the_dispatch_deadline_defaults_to_cloud_tasks_default(self) -> None:
        assert dispatch_deadline_from_config(None) == 600
        assert dispatch_deadline_from_config("15m") == 900

    def test_a_non_plan_is_refused_with_the_command_that_makes_one(self) -> None:
        with pytest.raises(PlanFormatError, match="python -m plan"):
            Plan.from_json({"stack": "dev"})
