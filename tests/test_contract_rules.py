"""Every rule two parts must agree on, fed the same corpus through every consumer.

A rule lives once in `contract/`; each part applies it its own way (a
ValueError, a refused task, a dropped header, a config error). These tests pass
one list of inputs through each consumer and require the same verdict as the
contract's, so a consumer that grows its own copy of a rule and drifts fails
here, with the input it disagrees on.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pulumi_docker_build as docker_build
import pulumi_gcp as gcp
import pytest
import yaml
from pydantic import BaseModel

from components.loading import config_key as components_config_key
from components.values import parse_duration as config_duration
from contract import resources
from contract.durations import DurationError, parse_duration_s, parse_whole_seconds
from contract.headers import header_name_problem, reserved_header_reason
from contract.task_types import is_task_type
from emulator import validation as emulator_validation
from emulator.errors import ApiError
from enqueue import TaskSpec, TaskValidationError
from plan.stack_config import REPO_ROOT
from policy import rules as policy_rules
from service.context import TaskContext
from service.task_registry import TaskRegistry

TASK_TYPES = [
    "smoke",
    "report.v2",
    "A_b-c.9",
    "x" * 100,
    "x" * 101,
    "",
    "_private",
    ".",
    "..",
    "-dash",
    "a/b",
    "a b",
    "é",
    "report%2e",
]

HEADER_NAMES = [
    "X-Custom",
    "x-trace",
    "Content-Type",
    "Authorization",
    "Host",
    "Content-Length",
    "User-Agent",
    "Connection",
    "Transfer-Encoding",
    "Keep-Alive",
    "Upgrade",
    "TE",
    "Trailer",
    "Proxy-Authorization",
    "X-CloudTasks-TaskName",
    "x-google-foo",
    "X-AppEngine-Country",
]
BAD_HEADER_NAMES = ["Bad Header", "X:Y", "", "Ünïcode"]

DURATIONS: list[object] = [
    "30s",
    "0.5s",
    "5m",
    "1h",
    " 2m ",
    "1.5m",
    45,
    2.5,
    "600",
    "-1s",
    "ten",
    "5d",
    "inf",
    "nan",
    True,
    "",
]


def _verdict(call: Callable[[], object], *errors: type[Exception]) -> bool:
    """True when call accepts its input, False when it refuses it with one of errors."""
    try:
        call()
    except errors:
        return False
    return True


class _Payload(BaseModel):
    pass


def _handler(payload: _Payload, ctx: TaskContext) -> None:
    return None


class TestTaskTypes:
    @pytest.mark.parametrize("name", TASK_TYPES)
    def test_the_enqueue_helper_and_the_worker_agree_with_the_contract(self, name: str) -> None:
        expected = is_task_type(name)
        sent = _verdict(lambda: TaskSpec(type=name), TaskValidationError)
        registered = _verdict(
            lambda: TaskRegistry().task(name, payload=_Payload)(_handler), ValueError
        )
        assert (sent, registered) == (expected, expected), name


class TestHeaders:
    @pytest.mark.parametrize("name", HEADER_NAMES)
    def test_reserved_headers_are_refused_by_the_helper_and_dropped_by_the_emulator(
        self, name: str
    ) -> None:
        # A task sent by the helper carries an OIDC token: Authorization is replaced.
        sent = _verdict(lambda: TaskSpec(type="smoke", headers={name: "v"}), TaskValidationError)
        assert sent == (reserved_header_reason(name, with_token=True) is None), name
        # The emulator drops what Cloud Tasks ignores; a token replaces Authorization later.
        dropped = emulator_validation.is_reserved_header(name)
        assert dropped == (reserved_header_reason(name, with_token=False) is not None), name

    @pytest.mark.parametrize("name", BAD_HEADER_NAMES)
    def test_invalid_names_are_refused_by_both(self, name: str) -> None:
        assert header_name_problem(name) is not None
        assert not _verdict(
            lambda: TaskSpec(type="smoke", headers={name: "v"}), TaskValidationError
        )
        assert not _verdict(lambda: emulator_validation.check_headers({name: "v"}), ApiError)

    def test_hop_by_hop_headers_are_reserved(self) -> None:
        for name in ("Transfer-Encoding", "Connection", "Keep-Alive", "Upgrade", "TE"):
            assert "hop-by-hop" in str(reserved_header_reason(name))


class TestDurations:
    @pytest.mark.parametrize("value", DURATIONS, ids=repr)
    def test_policy_and_stack_config_read_durations_as_the_contract_does(
        self, value: object
    ) -> None:
        try:
            expected: float | None = parse_duration_s(value)
        except DurationError:
            expected = None
        try:
            policy: float | None = policy_rules.parse_duration_s(value, "x")
        except policy_rules.PolicyInputError:
            policy = None
        assert policy == expected
        try:
            whole: int | None = parse_whole_seconds(value)
        except DurationError:
            whole = None
        try:
            config: int | None = config_duration(value)
        except ValueError:
            config = None
        assert config == whole


class TestPulumiNames:
    def test_the_config_namespace_is_the_project_name(self) -> None:
        project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
        assert project["name"] == resources.PROJECT_NAME
        assert components_config_key("max_attempts") == resources.config_key("max_attempts")
        assert (
            resources.config_key("dispatch_deadline") == policy_rules.DISPATCH_DEADLINE_CONFIG_KEY
        )

    @pytest.mark.parametrize(
        ("token", "cls"),
        [
            (resources.QUEUE_TYPE, gcp.cloudtasks.Queue),
            (resources.QUEUE_IAM_MEMBER_TYPE, gcp.cloudtasks.QueueIamMember),
            (resources.RUN_SERVICE_TYPE, gcp.cloudrunv2.Service),
            (resources.RUN_SERVICE_IAM_MEMBER_TYPE, gcp.cloudrunv2.ServiceIamMember),
            (resources.RUN_SERVICE_IAM_BINDING_TYPE, gcp.cloudrunv2.ServiceIamBinding),
            (resources.RUN_SERVICE_IAM_POLICY_TYPE, gcp.cloudrunv2.ServiceIamPolicy),
            (resources.LEGACY_RUN_SERVICE_TYPE, gcp.cloudrun.Service),
            (resources.LEGACY_RUN_IAM_MEMBER_TYPE, gcp.cloudrun.IamMember),
            (resources.SERVICE_ACCOUNT_TYPE, gcp.serviceaccount.Account),
            (resources.SERVICE_ACCOUNT_IAM_MEMBER_TYPE, gcp.serviceaccount.IAMMember),
            (resources.PROJECT_IAM_MEMBER_TYPE, gcp.projects.IAMMember),
            (resources.PROJECT_IAM_BINDING_TYPE, gcp.projects.IAMBinding),
            (resources.PROJECT_IAM_POLICY_TYPE, gcp.projects.IAMPolicy),
            (resources.PROJECT_SERVICE_TYPE, gcp.projects.Service),
            (resources.SERVICE_IDENTITY_TYPE, gcp.projects.ServiceIdentity),
            (resources.ARTIFACT_REPOSITORY_TYPE, gcp.artifactregistry.Repository),
            (resources.SECRET_IAM_MEMBER_TYPE, gcp.secretmanager.SecretIamMember),
            (resources.IMAGE_TYPE, docker_build.Image),
        ],
    )
    def test_each_type_token_is_the_one_the_sdk_registers(self, token: str, cls: Any) -> None:
        # The SDK passes its type token to ComponentResource/CustomResource.__init__.
        assert f"'{token}'" in inspect.getsource(cls), f"{cls.__name__} is not {token}"

    def test_roles_and_principals_come_from_the_contract(self) -> None:
        assert policy_rules.PUBLIC_MEMBERS is resources.PUBLIC_PRINCIPALS
        assert policy_rules.QUEUE == resources.QUEUE_TYPE
