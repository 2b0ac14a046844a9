"""Several queues per stack: a three-queue stack file with routes, through the program.

The stack file is tests/stacks/Pulumi.three-queues.yaml (queues default, email and
reports; routes enrich, record -> email, record_sync -> reports). The plan is the real program
under the plan's mocks; `TestIndependentMocks` runs the pipeline under a minimal
`pulumi.runtime.Mocks` of its own, so the grants are found by code that shares
nothing with the plan's recording.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components import TaskPipeline
from components.loading import parse_config
from components.task_types import BUILTIN_TASK_MODULE, declared_task_types
from contract.names import (
    OUTPUT_DISPATCH_DEADLINES,
    OUTPUT_QUEUE,
    OUTPUT_QUEUES,
    OUTPUT_ROUTES,
    WORKER_ENV_QUEUES,
    WORKER_ENV_ROUTES,
)
from contract.resources import (
    CLOUDTASKS_ENQUEUER_ROLE,
    PROJECT_IAM_MEMBER_TYPE,
    QUEUE_IAM_MEMBER_TYPE,
    QUEUE_TYPE,
    RUN_SERVICE_TYPE,
)
from plan.engine import evaluate, evaluate_config
from plan.errors import PlanError
from plan.model import Plan, PlannedResource
from plan.stack_config import REPO_ROOT, load_stack_config
from plan.views import last_segment
from tests.stack_files import STACK_FILES, THREE_QUEUES, plan_of, stack_config

KEY = "cloud-tasks-pipeline:"
STACK_YAML = yaml.safe_load((STACK_FILES / f"Pulumi.{THREE_QUEUES}.yaml").read_text())["config"]
QUEUE_SETTINGS: dict[str, dict[str, Any]] = STACK_YAML[f"{KEY}queues"]
ROUTES: dict[str, str] = STACK_YAML[f"{KEY}routes"]


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    return plan_of(THREE_QUEUES, tmp_path_factory.mktemp("project"))


def queues_by_key(plan: Plan) -> dict[str, PlannedResource]:
    by_path = {q.path: q.resource for q in plan.queues()}
    return {key: by_path[path] for key, path in plan.outputs[OUTPUT_QUEUES].items()}


def envs(plan: Plan) -> dict[str, str]:
    container = plan.one(RUN_SERVICE_TYPE).inputs["template"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["envs"]}


class TestEveryQueueHasItsPlannedSettings:
    def test_one_queue_per_key(self, plan: Plan) -> None:
        assert list(plan.outputs[OUTPUT_QUEUES]) == ["default", "email", "reports"]
        assert len(plan.of_type(QUEUE_TYPE)) == 3

    def test_email_and_reports_have_their_own_settings(self, plan: Plan) -> None:
        queues = queues_by_key(plan)
        email, reports = queues["email"].inputs, queues["reports"].inputs
        assert email["rateLimits"] == {"maxDispatchesPerSecond": 2, "maxConcurrentDispatches": 4}
        assert email["retryConfig"] == {
            "maxAttempts": 3,
            "minBackoff": "10s",
            "maxBackoff": "60s",
            "maxDoublings": 5,
            "maxRetryDuration": "0s",
        }
        assert email["stackdriverLoggingConfig"] == {"samplingRatio": 1}
        assert "httpTarget" not in email
        assert reports["rateLimits"] == {"maxDispatchesPerSecond": 1, "maxConcurrentDispatches": 2}
        assert reports["retryConfig"]["maxAttempts"] == 50
        assert reports["retryConfig"]["maxBackoff"] == "3600s"
        assert reports["retryConfig"]["maxRetryDuration"] == "86400s"
        assert reports["stackdriverLoggingConfig"] == {"samplingRatio": 0.5}
        assert reports["httpTarget"]["oidcToken"]["serviceAccountEmail"].startswith(
            "tasks-invoker@"
        )

    def test_the_flat_keys_are_queue_default(self, plan: Plan) -> None:
        default = queues_by_key(plan)["default"].inputs
        assert default["rateLimits"] == {"maxDispatchesPerSecond": 5, "maxConcurrentDispatches": 10}
        assert default["retryConfig"]["maxAttempts"] == 5

    def test_every_queue_is_protected_by_the_one_switch_and_auto_named(self, plan: Plan) -> None:
        for key, queue in queues_by_key(plan).items():
            assert queue.protect is False, key  # deletion_protection: false in the file
            assert "name" not in queue.inputs, key  # auto-named: logical name + suffix
        names = [last_segment(p) for p in plan.outputs[OUTPUT_QUEUES].values()]
        assert len(set(names)) == 3

    def test_the_default_queue_keeps_the_single_queue_names(self, plan: Plan) -> None:
        # Adding queues to a stack must not rename (replace) its queue or its grants.
        dev = {r.urn.split("::", 2)[2] for r in evaluate("dev").resources}
        for resource in [queues_by_key(plan)["default"], *plan.children(None)]:
            assert resource.urn.split("::", 2)[2] in dev, resource.urn


class TestGrants:
    def test_the_enqueuer_may_enqueue_and_view_on_every_queue_and_nothing_else(
        self, plan: Plan
    ) -> None:
        grants = plan.queue_grants()
        by_queue: dict[str, set[str]] = {}
        for grant in grants:
            by_queue.setdefault(grant.target, set()).add(grant.role)
        names = {key: q.outputs["name"] for key, q in queues_by_key(plan).items()}
        assert set(by_queue) == set(names.values())
        for name in names.values():
            assert by_queue[name] == {CLOUDTASKS_ENQUEUER_ROLE}

    def test_nothing_is_granted_project_wide(self, plan: Plan) -> None:
        assert plan.project_grants() == []

    def test_one_shared_invoker_binding(self, plan: Plan) -> None:
        [grant] = plan.run_invoker_grants()
        assert grant.member.startswith("serviceAccount:tasks-invoker@")


class TestWiring:
    def test_outputs_carry_the_maps(self, plan: Plan) -> None:
        assert plan.outputs[OUTPUT_QUEUE] == plan.outputs[OUTPUT_QUEUES]["default"]
        assert plan.outputs[OUTPUT_ROUTES] == ROUTES
        assert plan.outputs[OUTPUT_DISPATCH_DEADLINES] == {
            "default": "60s",
            "email": "30s",
            "reports": "1800s",
        }

    def test_the_worker_knows_every_queue_id_and_route(self, plan: Plan) -> None:
        env = envs(plan)
        ids = {k: last_segment(p) for k, p in plan.outputs[OUTPUT_QUEUES].items()}
        assert json.loads(env[WORKER_ENV_QUEUES]) == ids
        assert json.loads(env[WORKER_ENV_ROUTES]) == ROUTES

    def test_no_cycle_queues_first_and_their_target_is_the_deterministic_url(
        self, plan: Plan
    ) -> None:
        service = plan.one(RUN_SERVICE_TYPE)
        for key, queue in queues_by_key(plan).items():
            assert service.urn not in queue.dependencies, key
            assert queue.urn in service.dependencies, key
        reports = queues_by_key(plan)["reports"].inputs["httpTarget"]["uriOverride"]
        assert f"https://{reports['host']}" == service.outputs["uri"]

    def test_a_single_queue_stack_keeps_its_wiring(self) -> None:
        # staging: queue-level target, no queues, no routes: exactly as before.
        staging = evaluate("staging")
        assert WORKER_ENV_QUEUES not in envs(staging)
        assert WORKER_ENV_ROUTES not in envs(staging)
        service = staging.one(RUN_SERVICE_TYPE)
        assert service.urn in staging.one(QUEUE_TYPE).dependencies


class TestSameSettingsTwoWays:
    def test_queues_default_is_the_flat_keys(self, tmp_path: Path) -> None:
        flat = load_stack_config("staging")
        nested = dict(flat)
        moved = {"max_attempts": 10, "max_dispatches_per_second": 50, "queue_http_target": True}
        for key in moved:
            nested.pop(f"{KEY}{key}")
        nested[f"{KEY}queues"] = json.dumps({"default": moved})
        assert evaluate_config("staging", nested).to_json() == evaluate("staging").to_json()

    def test_empty_maps_are_the_single_queue_stack(self) -> None:
        config = load_stack_config("dev")
        config |= {f"{KEY}queues": "{}", f"{KEY}routes": "{}"}
        assert evaluate_config("dev", config).to_json() == evaluate("dev").to_json()


class TestIndependentMocks:
    """The pipeline under a Mocks of this test's own: what was registered, nothing else."""

    class Recorder(pulumi.runtime.Mocks):
        def __init__(self) -> None:
            self.resources: list[tuple[str, str, dict[str, Any]]] = []

        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            inputs = dict(args.inputs)
            self.resources.append((args.typ, args.name, inputs))
            outputs = dict(inputs)
            if args.typ == QUEUE_TYPE:
                outputs["name"] = inputs.get("name") or f"{args.name}-0000001"
                return f"projects/p/locations/l/queues/{outputs['name']}", outputs
            if args.typ == RUN_SERVICE_TYPE:
                outputs["uri"] = f"https://{inputs['name']}-1.l.run.app"
            if "accountId" in inputs:
                outputs["email"] = f"{inputs['accountId']}@p.iam.gserviceaccount.com"
                outputs["member"] = f"serviceAccount:{outputs['email']}"
            return f"{args.name}-id", outputs

        def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
            return {"number": "1", "accessToken": "t"}

    def test_every_grant_per_queue_and_nothing_project_wide(self) -> None:
        recorder = self.Recorder()
        pulumi.runtime.set_mocks(recorder, project="cloud-tasks-pipeline", stack="three")
        raw: dict[str, Any] = {
            k.split(":", 1)[1]: v for k, v in STACK_YAML.items() if not k.startswith("gcp:")
        }
        config = parse_config({**raw, "project": "my-tasks-dev", "region": "europe-west1"})

        @pulumi.runtime.test  # type: ignore[untyped-decorator]
        def check() -> pulumi.Output[Any]:
            pipeline = TaskPipeline("tasks", config, stack="three")

            def judge(_: Any) -> None:
                queues = {n: i for t, n, i in recorder.resources if t == QUEUE_TYPE}
                grants = [i for t, _, i in recorder.resources if t == QUEUE_IAM_MEMBER_TYPE]
                assert sorted(queues) == [
                    "tasks-queue-email-queue",
                    "tasks-queue-queue",
                    "tasks-queue-reports-queue",
                ]
                assert (
                    queues["tasks-queue-email-queue"]["rateLimits"]["maxDispatchesPerSecond"] == 2
                )
                per_queue = {(g["name"], g["role"]) for g in grants}
                assert per_queue == {
                    (f"{name}-0000001", role)
                    for name in queues
                    for role in (CLOUDTASKS_ENQUEUER_ROLE,)
                }
                project = [i for t, _, i in recorder.resources if t == PROJECT_IAM_MEMBER_TYPE]
                assert not any("cloudtasks" in g["role"] for g in project)

            return pulumi.Output.all(*pipeline.outputs.values()).apply(judge)

        check()


class TestConfigErrors:
    @pytest.mark.parametrize(
        ("change", "key", "words"),
        [
            (
                {"queues": {"email": {"max_dispatches_per_second": 0}}},
                "queues.email.max_dispatches_per_second",
                "greater than 0",
            ),
            ({"queues": {"email": {"max_attempts": -1}}}, "queues.email.max_attempts", "forever"),
            ({"queues": {"email": {"rate": 2}}}, "queues.email.rate", "not a queue setting"),
            ({"queues": {"Email": {}}}, "queues.Email", "lowercase letters"),
            ({"routes": {"enrich": "sms"}}, "routes.enrich", "queue 'sms' is not declared"),
            (
                {"routes": {"resize": "default"}},
                "routes.resize",
                "registers no task type 'resize'",
            ),
            (
                {
                    "queue_name": "shared",
                    "queues": {"email": {"queue_name": "shared", "dispatch_deadline": "60s"}},
                },
                "queues.email.queue_name",
                "same queue name",
            ),
            (
                {"max_attempts": "5", "queues": {"default": {"max_attempts": 3}}},
                "queues.default.max_attempts",
                "give each setting once",
            ),
            (
                {"queues": {"reports": {"dispatch_deadline": "30m"}}},
                "request_timeout",
                "at least queues.reports.dispatch_deadline (1800s)",
            ),
        ],
    )
    def test_each_names_its_key_path_before_any_resource(
        self, change: dict[str, Any], key: str, words: str
    ) -> None:
        config = load_stack_config("dev")
        for name, value in change.items():
            config[f"{KEY}{name}"] = value if isinstance(value, str) else json.dumps(value)
        with pytest.raises(PlanError) as caught:
            evaluate_config("dev", config)
        assert caught.value.declared == 0
        message = str(caught.value)
        assert f"invalid stack config {KEY}{key} = " in message
        assert words in message
        assert "Fix:" in message

    def test_a_map_key_given_as_text_is_refused(self) -> None:
        config = {**load_stack_config("dev"), f"{KEY}routes": "enrich=email"}
        with pytest.raises(PlanError, match="expected a YAML map"):
            evaluate_config("dev", config)

    def test_flat_key_at_its_default_and_queues_default_agree(self) -> None:
        # The CLI hands the program Pulumi.yaml's default of every unset flat key.
        config = parse_config(
            {"project": "my-tasks-dev", "region": "europe-west1", "max_attempts": "10"}
            | {"queues": {"default": {"max_attempts": 3}}}
        )
        assert config.queue.max_attempts == 3

    def test_without_task_modules_a_prebuilt_image_cannot_be_checked(self) -> None:
        # A module that is not next to Pulumi.yaml (a prebuilt image holds it) makes
        # the registered types unknowable: its routes are not refused.
        config = parse_config(
            {
                "project": "my-tasks-dev",
                "region": "europe-west1",
                "image": "europe-docker.pkg.dev/p/r/worker:1",
                "task_modules": ("theirteam.tasks",),
                "routes": {"resize": "default"},
            }
        )
        assert config.routes == {"resize": "default"}


class TestCapacity:
    def test_a_risk_is_a_warning_with_the_numbers(self, tmp_path: Path) -> None:
        config = stack_config(THREE_QUEUES, tmp_path)
        settings = dict(QUEUE_SETTINGS)
        settings["email"] = {**settings["email"], "max_concurrent_dispatches": 500}
        settings["reports"] = {**settings["reports"], "max_concurrent_dispatches": 100}
        config[f"{KEY}queues"] = json.dumps(settings)
        plan = evaluate_config(THREE_QUEUES, config)
        [warning] = plan.warnings
        # At most what each rate starts within one deadline is in flight: email 2/s x 30s
        # = 60 of its 500; reports 1/s x 1800s allows all its 100. 10 + 60 + 100 > 4 x 20.
        assert "170 attempts in flight (default 10 + email 60 + reports 100" in warning
        assert "takes 80 at once (max_instances 4 x request_concurrency 20)" in warning
        assert Plan.from_json(plan.to_json()).warnings == plan.warnings

    def test_the_committed_stacks_and_the_example_have_none(self, plan: Plan) -> None:
        assert plan.warnings == ()
        for stack in ("dev", "staging", "prod"):
            assert evaluate(stack).warnings == (), stack
            assert "warnings" not in evaluate(stack).to_json()


class TestRegisteredTypes:
    def test_the_source_scan_finds_what_the_worker_registers(self) -> None:
        from service.plugins import BUILTIN_HANDLERS
        from service.task_registry import registry

        __import__(BUILTIN_HANDLERS)
        assert BUILTIN_TASK_MODULE == BUILTIN_HANDLERS
        found = declared_task_types((), REPO_ROOT)
        assert found.complete
        # Other tests of this process may have loaded their own task modules too.
        builtin = {t.name for t in registry if t.handler.__module__.startswith(BUILTIN_HANDLERS)}
        assert found.names == builtin == {"smoke", "enrich"}

    def test_a_team_module_and_its_submodules_are_read(self, tmp_path: Path) -> None:
        package = tmp_path / "team"
        (package / "jobs").mkdir(parents=True)
        (package / "__init__.py").write_text("from team.jobs import mail\n")
        (package / "jobs" / "__init__.py").write_text("")
        (package / "jobs" / "mail.py").write_text(
            "from service import registry\nNAME = 'send_mail'\n"
            "@registry.task(NAME, payload=object)\ndef send(p, ctx): ...\n"
            "@registry.task('weekly_report', payload=object)\nasync def report(p, ctx): ...\n"
        )
        found = declared_task_types(("team",), tmp_path)
        assert found.names >= {"send_mail", "weekly_report"}
        assert found.unread == (BUILTIN_TASK_MODULE,)  # no service/ under tmp_path

    def test_a_computed_name_makes_the_result_incomplete(self, tmp_path: Path) -> None:
        (tmp_path / "dyn.py").write_text(
            "from service import registry\n"
            "@registry.task(make_name(), payload=object)\ndef f(p, ctx): ...\n"
        )
        found = declared_task_types(("dyn",), tmp_path)
        assert "dyn: line 2" in found.unread


class TestReadmeExample:
    def test_the_worked_example_is_a_valid_config(self) -> None:
        text = (REPO_ROOT / "README.md").read_text()
        section = text.split("## Several queues", 1)[1]
        block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
        example = {
            key.removeprefix(KEY): value for key, value in yaml.safe_load(block)["config"].items()
        }
        # myteam.tasks is the reader's module, not this repository's: its types are the
        # routes' own, checked here against the declared queues only.
        routes = example.pop("routes")
        example.pop("task_modules")
        config = parse_config({"project": "my-tasks-prod", "region": "europe-west1", **example})
        assert set(routes.values()) <= set(config.queues)
        email, reports = config.queues["email"], config.queues["reports"]
        assert (email.max_dispatches_per_second, email.max_attempts) == (2, 3)
        assert (reports.dispatch_deadline, reports.max_retry_duration) == (1800, 86400)
        assert config.capacity_warnings() == []
