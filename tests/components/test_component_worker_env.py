"""The worker's own environment from stack config: task modules (in the image),
plain settings, and secrets by reference; the same in Cloud Run and locally."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.worker_env import DOCKERFILE, REPO_ROOT, image_packages, missing_from_image
from contract.names import WORKER_ENV_EXTRA_MODULES
from contract.resources import (
    RUN_SERVICE_TYPE,
    SECRET_ACCESSOR_ROLE,
    SECRET_IAM_MEMBER_TYPE,
)
from devstack.realise import PlanNotRealisable, analyse
from plan.errors import PlanError
from plan.model import Plan
from tests.components.test_component_variants import dev_with as stack_with

# A package of this repository the worker image does not copy.
NOT_IN_IMAGE = "enqueue"


def dev_with(**overrides: str) -> Plan:
    """The dev stack with your own task modules, settings and secrets cleared, then
    `overrides`: these tests are about the mechanism, not your stack's values."""
    cleared = {"task_modules": "[]", "worker_env": "[]", "worker_secrets": "[]"}
    return stack_with(**{**cleared, **overrides})


def _envs(plan: Plan) -> list[dict[str, Any]]:
    envs: list[dict[str, Any]] = plan.one(RUN_SERVICE_TYPE).inputs["template"]["containers"][0][
        "envs"
    ]
    return envs


class TestTaskModules:
    def test_a_module_inside_the_built_image_reaches_the_worker_here_and_locally(self) -> None:
        # service/ is copied by service/Dockerfile: a module in it is in the image.
        plan = dev_with(task_modules=json.dumps(["service.handlers.enrich"]))
        envs = {e["name"]: e.get("value") for e in _envs(plan)}
        assert envs[WORKER_ENV_EXTRA_MODULES] == "service.handlers.enrich"
        local = analyse(plan).worker.env
        assert local[WORKER_ENV_EXTRA_MODULES] == "service.handlers.enrich"

    def test_a_module_the_image_would_lack_is_a_config_error_naming_the_fix(self) -> None:
        with pytest.raises(PlanError) as refused:
            dev_with(task_modules=json.dumps([f"{NOT_IN_IMAGE}.cli"]))
        message = str(refused.value)
        assert f"{NOT_IN_IMAGE}.cli would not be in the worker image" in message
        assert f"`COPY {NOT_IN_IMAGE}/ ./{NOT_IN_IMAGE}/`" in message
        assert f"`!{NOT_IN_IMAGE}/`" in message

    def test_a_module_that_does_not_exist_is_named_as_such(self) -> None:
        with pytest.raises(PlanError) as refused:
            dev_with(task_modules=json.dumps(["zz_typo.tasks"]))
        message = str(refused.value)
        assert "zz_typo.tasks: no such package or module next to Pulumi.yaml" in message
        assert "COPY" not in message

    def test_a_list_key_error_says_how_to_set_a_list(self) -> None:
        with pytest.raises(PlanError, match=r"pulumi config set --path '\S+:worker_env\[0\]'"):
            dev_with(worker_env=json.dumps(["API_TOKEN=x"]))

    def test_the_real_dockerfile_copies_the_worker_and_the_contract(self) -> None:
        # (and whatever packages of your own you add, as service/README.md says)
        assert {"contract", "service"} <= image_packages(REPO_ROOT, DOCKERFILE)

    def test_a_package_copied_and_let_through_the_ignore_file_is_in_the_image(
        self, tmp_path: Path
    ) -> None:
        (tmp_path / "service").mkdir()
        dockerfile = tmp_path / "service" / "Dockerfile"
        dockerfile.write_text(
            (REPO_ROOT / DOCKERFILE).read_text() + "COPY myteam/ ./myteam/\nCOPY other/ ./other/\n"
        )
        ignore = (REPO_ROOT / f"{DOCKERFILE}.dockerignore").read_text()
        Path(f"{dockerfile}.dockerignore").write_text(ignore + "!myteam/\n")
        # `other/` is copied but the ignore file keeps it out of the build context.
        packages = image_packages(tmp_path, DOCKERFILE)
        assert {"contract", "service", "myteam"} <= packages
        assert "other" not in packages
        assert missing_from_image(["myteam.tasks", "other.tasks"], tmp_path, DOCKERFILE) == [
            "other.tasks"
        ]

    def test_a_prebuilt_image_is_the_user_s_to_fill(self) -> None:
        plan = dev_with(
            task_modules=json.dumps(["myteam.tasks"]),
            image="europe-docker.pkg.dev/p/r/worker:1",
        )
        envs = {e["name"]: e.get("value") for e in _envs(plan)}
        assert envs[WORKER_ENV_EXTRA_MODULES] == "myteam.tasks"


class TestPlainSettings:
    def test_settings_are_set_on_the_container(self) -> None:
        plan = dev_with(worker_env=json.dumps(["ENRICH_BACKEND_URL=https://api.example.com"]))
        envs = {e["name"]: e.get("value") for e in _envs(plan)}
        assert envs["ENRICH_BACKEND_URL"] == "https://api.example.com"
        assert analyse(plan).worker.env["ENRICH_BACKEND_URL"] == "https://api.example.com"

    @pytest.mark.parametrize(
        ("entry", "message"),
        [
            ("API_TOKEN=abc", "looks like a credential"),
            ("DB_PASSWORD=abc", "looks like a credential"),
            ("PORT=9000", "set by Cloud Run or by the program"),
            (f"{WORKER_ENV_EXTRA_MODULES}=x", "list modules in task_modules"),
            ("no-equals", "must look like NAME=value"),
            ("1BAD=x", "not an environment variable name"),
        ],
    )
    def test_refused_entries_say_why(self, entry: str, message: str) -> None:
        with pytest.raises(PlanError, match=message):
            dev_with(worker_env=json.dumps([entry]))

    def test_a_name_set_twice_is_refused(self) -> None:
        with pytest.raises(PlanError, match="SAME is set more than once"):
            dev_with(worker_env=json.dumps(["SAME=1"]), worker_secrets=json.dumps(["SAME=s"]))


class TestSecrets:
    def test_a_secret_is_read_by_cloud_run_and_only_its_secret_is_granted(self) -> None:
        plan = dev_with(
            worker_secrets=json.dumps(["API_TOKEN=api-token", "DB_URL=db-url:3", "OTHER=api-token"])
        )
        by_name = {e["name"]: e for e in _envs(plan)}
        assert by_name["API_TOKEN"]["valueSource"]["secretKeyRef"] == {
            "secret": "api-token",
            "version": "latest",
        }
        assert by_name["DB_URL"]["valueSource"]["secretKeyRef"]["version"] == "3"
        assert "value" not in by_name["API_TOKEN"]
        grants = plan.of_type(SECRET_IAM_MEMBER_TYPE)
        assert sorted(g.inputs["secretId"] for g in grants) == ["api-token", "db-url"]
        runtime = plan.exports.project
        for grant in grants:
            assert grant.inputs["role"] == SECRET_ACCESSOR_ROLE
            assert grant.inputs["member"].startswith("serviceAccount:")
            assert grant.inputs["member"].endswith(f"-runtime@{runtime}.iam.gserviceaccount.com")
        service = plan.one(RUN_SERVICE_TYPE)
        assert {g.urn for g in grants} <= set(service.dependencies)

    def test_without_secrets_there_is_no_grant(self) -> None:
        assert dev_with().of_type(SECRET_IAM_MEMBER_TYPE) == []

    @pytest.mark.parametrize(
        ("entry", "message"),
        [
            ("API_TOKEN=projects/p/secrets/s", "not a Secret Manager secret id"),
            ("API_TOKEN=token:newest", "must be 'latest' or a version number"),
            ("K_SERVICE=s", "set by Cloud Run"),
        ],
    )
    def test_refused_references_say_why(self, entry: str, message: str) -> None:
        with pytest.raises(PlanError, match=message):
            dev_with(worker_secrets=json.dumps([entry]))

    def test_locally_the_value_comes_from_the_shell_never_from_config(self) -> None:
        plan = dev_with(worker_secrets=json.dumps(["API_TOKEN=api-token"]))
        with pytest.raises(PlanNotRealisable, match=r"export API_TOKEN=\.\.\. in the shell"):
            analyse(plan, {})
        realised = analyse(plan, {"API_TOKEN": "from-my-shell"})
        assert realised.worker.env["API_TOKEN"] == "from-my-shell"
        assert any("Secret Manager secret api-token" in s for s in realised.substitutions)
        verdicts = {v.type: v.verdict for v in realised.verdicts}
        assert verdicts[SECRET_IAM_MEMBER_TYPE] == "no local effect"
