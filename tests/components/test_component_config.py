"""Each config rule rejects a bad value with the message a user sees, before any
resource is declared.

Three levels: `parse_config` (the rule itself), `load_config` under Pulumi's
mocks with `@pulumi.runtime.test` (the way the program reads config), and the
whole program evaluated with the bad value (nothing registered).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import pulumi
import pytest
import yaml

from components.config import ConfigError, GcpConfig, PipelineConfig, QueueConfig
from components.loading import (
    config_fields,
    config_key,
    is_map,
    load_config,
    parse_config,
    project_keys,
)
from components.values import parse_cpu, parse_duration, parse_memory_mib
from contract.resources import PROJECT_NAME
from plan.engine import evaluate_config
from plan.errors import PlanError
from plan.stack_config import REPO_ROOT, load_stack_config

BASE = {"project": "my-tasks-dev", "region": "europe-west1"}

# (field overrides, key named in the message, words the message must contain)
BAD_VALUES: list[tuple[dict[str, Any], str, str]] = [
    ({"max_dispatches_per_second": "0"}, "max_dispatches_per_second", "greater than 0"),
    ({"max_dispatches_per_second": "501"}, "max_dispatches_per_second", "(0, 500]"),
    ({"max_dispatches_per_second": "fast"}, "max_dispatches_per_second", "number"),
    ({"max_concurrent_dispatches": "0"}, "max_concurrent_dispatches", "1..5000"),
    ({"max_concurrent_dispatches": "5001"}, "max_concurrent_dispatches", "1..5000"),
    ({"max_attempts": "-1"}, "max_attempts", "retried forever"),
    ({"max_attempts": "0"}, "max_attempts", "greater than or equal to 1"),
    ({"min_backoff": "ten seconds"}, "min_backoff", "like 30s, 5m or 1h"),
    ({"max_backoff": "1.5s"}, "max_backoff", "whole seconds"),
    ({"min_backoff": "60s", "max_backoff": "30s"}, "min_backoff", "must not exceed max_backoff"),
    ({"max_doublings": "-1"}, "max_doublings", "greater than or equal to 0"),
    ({"max_retry_duration": "-5s"}, "max_retry_duration", "cannot be negative"),
    ({"log_sampling_ratio": "1.5"}, "log_sampling_ratio", "0..1"),
    ({"dispatch_deadline": "10s"}, "dispatch_deadline", "from 15s to 1800s"),
    ({"dispatch_deadline": "31m", "request_timeout": "3600s"}, "dispatch_deadline", "1800s"),
    ({"request_timeout": "3601s"}, "request_timeout", "at most 3600s"),
    (
        {"dispatch_deadline": "900s", "request_timeout": "600s"},
        "request_timeout",
        "at least dispatch_deadline (900s)",
    ),
    ({"ingress": "PUBLIC"}, "ingress", "INGRESS_TRAFFIC_INTERNAL_ONLY"),
    (
        {"min_instances": "5", "max_instances": "2"},
        "min_instances",
        "must not exceed max_instances",
    ),
    ({"max_instances": "0"}, "max_instances", "greater than or equal to 1"),
    ({"cpu": "3"}, "cpu", "one of 1, 2, 4, 6, 8"),
    ({"cpu": "0.05"}, "cpu", "between 0.08 and 1"),
    ({"cpu": "lots"}, "cpu", '"500m"'),
    ({"cpu": "0.5"}, "request_concurrency", "concurrency 1 with less than one CPU"),
    ({"memory": "512"}, "memory", '"512Mi"'),
    ({"memory": "64Mi"}, "memory", "128Mi to 32Gi"),
    ({"memory": "33Gi"}, "memory", "128Mi to 32Gi"),
    ({"memory": "12Gi", "cpu": "2"}, "cpu", "at least 4 CPUs"),
    ({"deletion_protection": "maybe"}, "deletion_protection", "boolean"),
    ({"queue_paused": "sometimes"}, "queue_paused", "boolean"),
    ({"queue_name": "orders_queue"}, "queue_name", "letters, digits and hyphens"),
    ({"service_name": "Tasks_Worker"}, "service_name", "lowercase"),
    ({"service_name": "w" * 50}, "service_name", "1..49"),
    ({"account_prefix": "a-very-long-account-prefix"}, "account_prefix", "6..30"),
    ({"custom_audience": "https://tasks.example.com/path"}, "custom_audience", "401"),
    ({"custom_audience": "http://tasks.example.com"}, "custom_audience", "https://"),
    ({"enqueuers": ("allUsers",)}, "enqueuers", "anyone"),
    ({"enqueuers": ("bob@example.com",)}, "enqueuers", "serviceAccount:"),
    ({"enqueuers": ("group:a@x.com", "group:a@x.com")}, "enqueuers", "twice"),
    ({"image": "my image"}, "image", "no spaces"),
    ({"project": "My_Project"}, "gcp:project", "project id"),
    ({"region": "europe"}, "gcp:region", "europe-west1"),
]


def key_of(field: str) -> str:
    return field if ":" in field else f"{PROJECT_NAME}:{field}"


@pytest.mark.parametrize(("overrides", "field", "words"), BAD_VALUES)
def test_each_rule_rejects_a_bad_value_with_a_message(
    overrides: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, **overrides})
    message = str(caught.value)
    assert caught.value.key == key_of(field)
    assert f"invalid stack config {key_of(field)} = " in message
    assert words in message
    assert "Fix: " in message  # every message says how to fix it


def test_every_mistake_is_named_at_once_not_one_per_run() -> None:
    """A stack file with three mistakes is fixed in one pass: each key is named, each once."""
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {**BASE, "max_attempts": "0", "cpu": "lots", "ingress": "PUBLIC", "memory": "512"}
        )
    message = str(caught.value)
    for field in ("max_attempts", "cpu", "ingress", "memory"):
        assert message.count(f"invalid stack config {key_of(field)} = ") == 1, field
    assert caught.value.key == key_of("max_attempts")  # the first stays the headline
    assert [e.key for e in caught.value.others] == [key_of(f) for f in ("ingress", "cpu", "memory")]

    queues = {
        "email": {"max_attempts": "0", "max_dispatches_per_second": "0"},
        "bulk": {"max_backof": "5s", "speed": "1"},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, "queues": queues})
    named = [caught.value.key, *(e.key for e in caught.value.others)]
    assert named == [
        key_of("queues.email.max_dispatches_per_second"),
        key_of("queues.email.max_attempts"),
        key_of("queues.bulk.max_backof"),
        key_of("queues.bulk.speed"),
    ]


def test_a_missing_project_is_named() -> None:
    with pytest.raises(ConfigError, match=r"gcp:project = \(not set\): it is required"):
        parse_config({"region": "europe-west1"})


def test_defaults_are_valid_and_safe() -> None:
    config = parse_config(BASE)
    assert config.worker.deletion_protection is True
    assert config.worker.ingress == "INGRESS_TRAFFIC_ALL"
    assert config.worker.request_timeout >= config.queue.dispatch_deadline
    assert config.queue.queue_name is None


class TestParsers:
    @pytest.mark.parametrize(
        ("text", "expected"), [("30s", 30), ("5m", 300), ("1h", 3600), ("45", 45), (" 2m ", 120)]
    )
    def test_durations(self, text: str, expected: int) -> None:
        assert parse_duration(text) == expected

    @pytest.mark.parametrize("text", ["1.5s", "5d", "-1s", "s", ""])
    def test_bad_durations(self, text: str) -> None:
        with pytest.raises(ValueError, match=r"duration|whole number"):
            parse_duration(text)

    def test_cpu_forms(self) -> None:
        assert str(parse_cpu("500m")) == "0.5"
        assert parse_cpu("4") == 4

    def test_memory_forms(self) -> None:
        assert parse_memory_mib("1Gi") == 1024
        assert parse_memory_mib("512Mi") == 512
        assert parse_memory_mib("1G") == 953  # Cloud Run reads G as 10^9 bytes


# --- through pulumi.Config, under Pulumi's mocks ---------------------------------------

_Test = TypeVar("_Test", bound=Callable[..., Any])


def pulumi_test(function: _Test) -> _Test:
    """`pulumi.runtime.test`, typed: it runs the test and waits for its outputs."""
    return cast(_Test, pulumi.runtime.test(function))  # type: ignore[no-untyped-call]


class _NoResources(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.declared: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.declared.append(args.name)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        return {}


@pytest.fixture
def mocks() -> _NoResources:
    mock = _NoResources()
    pulumi.runtime.set_mocks(mock, project=PROJECT_NAME, stack="test", preview=False)
    return mock


def set_config(**values: str) -> None:
    config = {"gcp:project": "my-tasks-dev", "gcp:region": "europe-west1"}
    config.update({key_of(k): v for k, v in values.items()})
    pulumi.runtime.set_all_config(config)


@pulumi_test
def test_load_config_reads_typed_values_through_pulumi_config(mocks: _NoResources) -> None:
    set_config(
        max_dispatches_per_second="12.5",
        queue_http_target="true",
        enqueuers='["group:team@example.com"]',
        min_backoff="2m",
    )
    config = load_config()
    assert config.queue.max_dispatches_per_second == 12.5
    assert config.queue.queue_http_target is True
    assert config.identities.enqueuers == ("group:team@example.com",)
    assert config.queue.min_backoff == 120


@pulumi_test
def test_load_config_rejects_a_typo_in_a_key(mocks: _NoResources) -> None:
    set_config(max_dispatch_per_second="5")
    with pytest.raises(ConfigError, match=r"max_dispatch_per_second.*not known.*pulumi config rm"):
        load_config()
    assert mocks.declared == []


@pulumi_test
def test_load_config_rejects_an_enqueuer_list_that_is_not_a_list(mocks: _NoResources) -> None:
    set_config(enqueuers="group:team@example.com")
    with pytest.raises(ConfigError, match=r"enqueuers.*YAML list"):
        load_config()


@pulumi_test
def test_load_config_rejects_out_of_range_before_any_resource(mocks: _NoResources) -> None:
    set_config(max_concurrent_dispatches="9000")
    with pytest.raises(ConfigError, match="max_concurrent_dispatches = '9000'"):
        load_config()
    assert mocks.declared == []


# --- through the whole program -----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_dispatches_per_second", "900"),
        ("min_backoff", "90s"),
        ("request_timeout", "30s"),
        ("ingress", "EVERYONE"),
        ("enqueuers", '["allAuthenticatedUsers"]'),
        ("memory", "12Gi"),
    ],
)
def test_the_program_stops_before_declaring_anything(key: str, value: str) -> None:
    config = load_stack_config("dev")
    config[f"{PROJECT_NAME}:{key}"] = value
    with pytest.raises(PlanError, match="invalid stack config") as caught:
        evaluate_config("dev", config)
    assert caught.value.declared == 0


# --- the models, Pulumi.yaml and the README's reference name the same keys -----------------
#
# A key is added in one place, a field of a `components.config` section; these tests
# then fail until Pulumi.yaml and the README's configuration reference say the same
# (key, type, default), and fail for a key either of them lists that no model has.

# README type -> Pulumi.yaml type (Pulumi.yaml types only string, integer, boolean, array).
README_TO_PULUMI_TYPE = {
    "string": "string",
    "number": "string",
    "duration": "string",
    "integer": "integer",
    "boolean": "boolean",
    "list of strings": "array",
}


def pulumi_yaml() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(Path(REPO_ROOT, "Pulumi.yaml").read_text())
    return document


def readme_reference() -> dict[str, dict[str, str]]:
    """The README's configuration reference rows, by key as written there."""
    text = Path(REPO_ROOT, "README.md").read_text()
    section = text.split("\n## Configuration reference\n", 1)[1].split("\n## ", 1)[0]
    columns = ("type", "default", "accepted", "meaning")
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.split("|")[1:-1]]
            assert len(cells) == 5, f"README reference row without 5 columns: {line}"
            rows[cells[0].strip("`")] = dict(zip(columns, cells[1:], strict=True))
    return rows


def readme_name(field: str) -> str:
    """How the README names a key: short in this project's namespace, full otherwise."""
    key = config_key(field)
    return field if key.startswith(f"{PROJECT_NAME}:") else key


def model_readme_type(field: str) -> str:
    info = config_fields()[field]
    if any(getattr(m, "func", None) is parse_duration for m in info.metadata):
        return "duration"
    kinds: list[tuple[object, str]] = [
        (bool, "boolean"),
        (int, "integer"),
        (float, "number"),
        (tuple[str, ...], "list of strings"),
        (dict[str, QueueConfig], "map of queues"),
        (dict[str, str], "map of strings"),
    ]
    return next((name for kind, name in kinds if info.annotation == kind), "string")


def test_the_readme_reference_lists_exactly_the_model_keys() -> None:
    model = {readme_name(field) for field in config_fields()}
    readme = set(readme_reference())
    assert sorted(readme - model) == [], "in the README's configuration reference, in no model"
    assert sorted(model - readme) == [], "in a model, not in the README's configuration reference"


def test_pulumi_yaml_declares_exactly_the_model_keys() -> None:
    declared = {f"{PROJECT_NAME}:{key}" for key in pulumi_yaml()["config"]}
    # Pulumi's project config types are string, integer, boolean and array
    # (sdk/go/common/workspace/project.json): a map key cannot be declared, so
    # Pulumi.yaml names the map keys in a comment instead.
    maps = {config_key(field) for field in config_fields() if is_map(field)}
    assert maps == {f"{PROJECT_NAME}:queues", f"{PROJECT_NAME}:routes"}
    keys = set(project_keys()) - maps
    assert sorted(declared - keys) == [], "in Pulumi.yaml, in no model (or a map key)"
    assert sorted(keys - declared) == [], "in a model, not in Pulumi.yaml"
    text = (REPO_ROOT / "Pulumi.yaml").read_text()
    for key in maps:
        assert f"#   {key.split(':', 1)[1]}:" in text, f"Pulumi.yaml's comment does not name {key}"


def test_types_agree_between_the_models_the_readme_and_pulumi_yaml() -> None:
    readme = readme_reference()
    declared = pulumi_yaml()["config"]
    for field in config_fields():
        if readme_name(field) not in readme:
            continue  # reported by test_the_readme_reference_lists_exactly_the_model_keys
        documented = readme[readme_name(field)]["type"]
        assert documented == model_readme_type(field), field
        if field in declared:
            assert declared[field]["type"] == README_TO_PULUMI_TYPE[documented], field


def test_pulumi_yaml_documents_every_key_with_the_same_default() -> None:
    document = pulumi_yaml()
    assert document["name"] == PROJECT_NAME
    assert document["runtime"] == {
        "name": "python",
        "options": {"toolchain": "pip", "virtualenv": ".venv"},
    }
    declared = document["config"]
    # The CLI's config merge treats a project key declared without a default as
    # required and refuses any stack that does not set it: every key has one.
    missing = sorted(k for k, spec in declared.items() if "default" not in spec)
    assert not missing, f"declared without a default (the CLI would require them): {missing}"
    # "" and [] are how Pulumi.yaml says "unset" for the optional keys.
    defaults = {k: v["default"] for k, v in declared.items() if v["default"] not in ("", [])}
    assert parse_config({**BASE, **defaults}) == PipelineConfig(gcp=GcpConfig(**BASE))
    for key, spec in declared.items():
        assert spec.get("description"), f"{key} has no description in Pulumi.yaml"
        if key not in config_fields():
            continue  # reported by test_pulumi_yaml_declares_exactly_the_model_keys
        model_default = config_fields()[key].default
        assert (spec["default"] in ("", [])) == (model_default in (None, ())), key


def test_readme_reference_gives_each_key_the_model_default() -> None:
    readme = readme_reference()
    for field, info in config_fields().items():
        if readme_name(field) not in readme:
            continue  # reported by test_the_readme_reference_lists_exactly_the_model_keys
        documented = readme[readme_name(field)]["default"].strip('"')
        default = info.default
        if info.is_required():
            assert documented == "required", field
        elif isinstance(default, bool):
            assert documented == str(default).lower(), field
        elif isinstance(default, int | float):
            assert float(documented.rstrip("s")) == default, field
        elif isinstance(default, str):
            assert documented == default, field
        elif default == ():
            assert documented == "[]", field


def test_every_committed_stack_is_valid() -> None:
    for path in sorted(REPO_ROOT.glob("Pulumi.*.yaml")):
        stack = path.name.split(".")[1]
        config = load_stack_config(stack)
        # "" and [] are Pulumi.yaml's "not set", as load_config reads them.
        fields: dict[str, Any] = {
            k.split(":", 1)[1]: v
            for k, v in config.items()
            if k.startswith(PROJECT_NAME) and v not in ("", "[]")
        }
        fields["project"], fields["region"] = config["gcp:project"], config["gcp:region"]
        for key, value in list(fields.items()):
            if isinstance(value, str) and value.startswith("["):  # list keys: JSON text
                fields[key] = tuple(yaml.safe_load(value))
        assert parse_config(fields).gcp.project == config["gcp:project"]


@pytest.mark.parametrize("region", ["europe-west1", "europe-west12", "us-central1", "me-central2"])
def test_real_regions_are_accepted(region: str) -> None:
    assert parse_config({**BASE, "region": region}).gcp.region == region
