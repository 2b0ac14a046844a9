"""Reading the stack config: flat keys -> `PipelineConfig` sections -> `ConfigError`.

Keys are flat in `Pulumi.<stack>.yaml` (`cloud-tasks-pipeline:max_attempts`,
`gcp:project`); the section each belongs to, its namespace and whether it is a
list are read from the models in `components.config`, never listed here.
`load_config()` reads every key through `pulumi.Config`, refuses keys of this
project's namespace that no model declares (a typo would otherwise be ignored),
and `parse_config()` turns the first validation failure into a `ConfigError`
that names the full key, the value given, what is accepted and the fix.

This module deliberately holds no rule about a value (`components.config` and
`components.values` do) and declares no resource.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping
from typing import Any

import pulumi
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from components.config import ConfigError, FieldProblem, PipelineConfig, Section
from contract.resources import PROJECT_NAME

# --- keys: read from the models, never listed by hand ------------------------------------


def _sections() -> dict[str, type[Section]]:
    sections: dict[str, type[Section]] = {}
    for name, info in PipelineConfig.model_fields.items():
        model = info.annotation
        if not (isinstance(model, type) and issubclass(model, Section)):
            raise TypeError(f"PipelineConfig.{name} is not a config section")
        sections[name] = model
    return sections


SECTIONS = _sections()
"""Section attribute of `PipelineConfig` -> its model."""


def _section_of_keys() -> dict[str, str]:
    owner: dict[str, str] = {}
    for section, model in SECTIONS.items():
        for field in model.model_fields:
            if field in owner:
                raise TypeError(f"config key {field} is in both {owner[field]} and {section}")
            owner[field] = section
    return owner


_SECTION_OF = _section_of_keys()
"""Field (short config key) -> the `PipelineConfig` section that holds it."""


def config_fields() -> dict[str, FieldInfo]:
    """Every config field by its short key (`max_attempts`, `project`), in model order."""
    return {field: SECTIONS[section].model_fields[field] for field, section in _SECTION_OF.items()}


def config_key(field: str) -> str:
    """The full config key of a field: `cloud-tasks-pipeline:max_attempts`, `gcp:project`."""
    section = _SECTION_OF.get(field)
    namespace = SECTIONS[section].namespace if section else PROJECT_NAME
    return f"{namespace}:{field}"


def project_keys() -> tuple[str, ...]:
    """Every `cloud-tasks-pipeline:*` key this program understands."""
    return tuple(
        config_key(field)
        for field, section in _SECTION_OF.items()
        if SECTIONS[section].namespace == PROJECT_NAME
    )


def _is_list(field: str) -> bool:
    return typing.get_origin(config_fields()[field].annotation) is tuple


# --- parsing ------------------------------------------------------------------------------


def parse_config(raw: Mapping[str, Any]) -> PipelineConfig:
    """Validate raw values keyed by short key; raise `ConfigError` on the first problem."""
    nested: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for field, value in raw.items():
        if field not in _SECTION_OF:
            raise ConfigError(
                config_key(field),
                value,
                "this key is not known; the README's configuration reference lists the keys",
            )
        nested[_SECTION_OF[field]][field] = value
    try:
        return PipelineConfig.model_validate(nested)
    except ValidationError as exc:
        raise _config_error(exc, raw) from None


def _config_error(exc: ValidationError, raw: Mapping[str, Any]) -> ConfigError:
    """The first pydantic error as a `ConfigError` naming the key to change."""
    error = exc.errors()[0]
    context = error.get("ctx") or {}
    inner = context.get("error")
    if isinstance(inner, FieldProblem):
        fix = inner.fix or _fix_for(inner.field)
        return ConfigError(config_key(inner.field), inner.value, inner.problem, fix)
    # loc is (section, field, ...) for a field's own error.
    field = str(error["loc"][1]) if len(error["loc"]) > 1 else "?"
    value = raw.get(field)
    problem = str(inner) if isinstance(inner, ValueError) else error["msg"]
    described = config_fields().get(field)
    if not isinstance(inner, ValueError) and described and described.description:
        problem = f"{problem} ({described.description.rstrip('.')})"
    if error["type"] == "missing":
        problem = "it is required"
    elif error["type"] == "literal_error" and described is not None:
        accepted = ", ".join(str(v) for v in typing.get_args(described.annotation))
        problem = f"{field} must be one of {accepted}"
    return ConfigError(config_key(field), value, problem, _fix_for(field))


def _fix_for(field: str) -> str | None:
    """How to set a key, when the default sentence (`pulumi config set KEY VALUE`) would
    store the wrong thing: a list key takes one item per path."""
    if field in config_fields() and _is_list(field):
        key = config_key(field)
        return (
            f"set the list with `pulumi config set --path '{key}[0]' FIRST` (then [1], ...) "
            f"or as a YAML list under {key} in Pulumi.<stack>.yaml"
        )
    return None


# --- reading through pulumi.Config ---------------------------------------------------------


def _configured_project_keys() -> set[str]:
    """Keys set in this project's namespace, wherever the runtime got them from.

    The CLI hands config to the program through PULUMI_CONFIG; tests and the
    offline plan use `set_all_config`. Pulumi has no public API to list keys, and
    a typo in a key would otherwise be silently ignored, so both are read here.
    """
    from pulumi.runtime import config as runtime_config

    keys = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    return {key for key in keys if key.startswith(f"{PROJECT_NAME}:")}


def load_config() -> PipelineConfig:
    """Read and validate the stack config; raise `ConfigError` before any resource exists."""
    unknown = sorted(_configured_project_keys() - set(project_keys()))
    if unknown:
        raise ConfigError(
            unknown[0],
            pulumi.Config(PROJECT_NAME).get(unknown[0].split(":", 1)[1]),
            "this key is not known (a typo?); Pulumi.yaml and the README's configuration "
            "reference list the keys",
            fix=f"rename it to a known key or remove it with `pulumi config rm {unknown[0]}`",
        )
    raw: dict[str, Any] = {}
    for field, section in _SECTION_OF.items():
        namespace = SECTIONS[section].namespace
        text = pulumi.Config(namespace).get(field)
        # "" (and []) are Pulumi.yaml's defaults for the optional keys: not set.
        if text is None or (text == "" and namespace == PROJECT_NAME):
            continue
        if _is_list(field):
            raw[field] = _list_value(field, text)
        else:
            raw[field] = text
    return parse_config(raw)


def _list_value(field: str, text: str) -> tuple[str, ...]:
    """A list key as Pulumi hands it over: JSON text (`enqueuers`, `task_modules`...)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError(
            config_key(field), text, 'expected a YAML list like ["first", "second"]'
        ) from None
    if not isinstance(value, list):
        raise ConfigError(config_key(field), text, "expected a list of strings")
    return tuple(str(v) for v in value)
