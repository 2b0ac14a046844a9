"""Reading the stack config: flat keys -> `PipelineConfig` sections -> `ConfigError`.

Keys are flat in `Pulumi.<stack>.yaml` (`cloud-tasks-pipeline:max_attempts`,
`gcp:project`), except the two maps `queues` and `routes` (YAML maps, which
Pulumi hands to the program as JSON objects); the section each key belongs to,
its namespace and whether it is a list or a map are read from the models in
`components.config`, never listed here. `queues.default.<key>` and the flat
`<key>` both describe queue `default`: they are merged, and giving one setting
both ways (the flat one not at its default) is an error naming both.
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
from typing import Annotated, Any

import pulumi
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from components.config import ConfigError, FieldProblem, PipelineConfig, QueueConfig, Section
from contract.resources import PROJECT_NAME
from contract.routing import DEFAULT_QUEUE_KEY, queue_key_problem

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


def is_map(field: str) -> bool:
    """A key whose value is a YAML map (`queues`, `routes`)."""
    return typing.get_origin(config_fields()[field].annotation) is dict


QUEUES_KEY = "queues"
ROUTES_KEY = "routes"


# --- parsing ------------------------------------------------------------------------------


def parse_config(raw: Mapping[str, Any]) -> PipelineConfig:
    """Validate raw values keyed by short key; raise `ConfigError` naming every problem
    found (the queues' settings first: cross-key checks need valid queues).

    `raw["queues"]`, when given, is a map of queue key -> settings map; `raw["routes"]`
    a map of task type -> queue key."""
    flat, queues = _split_queues(raw)
    nested: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for field, value in flat.items():
        if field not in _SECTION_OF:
            raise ConfigError(
                config_key(field),
                value,
                "this key is not known; the README's configuration reference lists the keys",
            )
        nested[_SECTION_OF[field]][field] = value
    if queues:
        nested[_SECTION_OF[QUEUES_KEY]][QUEUES_KEY] = queues
    try:
        return PipelineConfig.model_validate(nested)
    except ValidationError as exc:
        raise _config_error(exc, raw) from None


def _split_queues(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, QueueConfig]]:
    """The flat keys with `queues.default` merged in, and every other queue validated
    (its errors name `queues.<key>.<setting>`)."""
    flat = {field: value for field, value in raw.items() if field != QUEUES_KEY}
    given = raw.get(QUEUES_KEY)
    if given is None:
        return flat, {}
    if not isinstance(given, Mapping):
        raise ConfigError(
            config_key(QUEUES_KEY),
            given,
            "expected a map from queue key to that queue's settings, like "
            "{email: {max_dispatches_per_second: 2}}",
        )
    queues: dict[str, QueueConfig] = {}
    problems: list[ConfigError] = []
    for key, settings in given.items():
        try:
            _add_queue(flat, queues, str(key), settings)
        except ConfigError as exc:  # the next queue's mistakes are reported too
            problems += [exc, *exc.others]
    if problems:
        raise ConfigError.combined(problems)
    return flat, queues


def _add_queue(
    flat: dict[str, Any], queues: dict[str, QueueConfig], key: str, settings: Any
) -> None:
    """One entry of `queues`: `default` merged into the flat keys, any other validated."""
    path = f"{QUEUES_KEY}.{key}"
    if (problem := queue_key_problem(str(key))) is not None:
        raise ConfigError(config_key(path), key, problem, fix=_map_fix(QUEUES_KEY))
    settings = {} if settings is None else settings
    if not isinstance(settings, Mapping):
        raise ConfigError(
            config_key(path),
            settings,
            "expected a map of that queue's settings, like {max_dispatches_per_second: 2}",
            fix=_map_fix(QUEUES_KEY),
        )
    unknown = [
        ConfigError(
            config_key(f"{path}.{field}"),
            value,
            "not a queue setting; a queue takes " + ", ".join(QueueConfig.model_fields),
            fix="fix its spelling or remove it",
        )
        for field, value in settings.items()
        if field not in QueueConfig.model_fields
    ]
    if unknown:
        raise ConfigError.combined(unknown)
    if key == DEFAULT_QUEUE_KEY:
        _merge_default(flat, settings)
    else:
        queues[key] = _queue_config(path, settings)


def _merge_default(flat: dict[str, Any], settings: Mapping[str, Any]) -> None:
    """`queues.default.<key>` into the flat keys, refusing a setting given both ways.

    The Pulumi CLI hands the program Pulumi.yaml's declared default of every flat key
    the stack does not set, so a flat value equal to the default counts as not set."""
    for field, value in settings.items():
        if field in flat and not _is_default(field, flat[field]) and flat[field] != value:
            path = f"{QUEUES_KEY}.{DEFAULT_QUEUE_KEY}.{field}"
            raise ConfigError(
                config_key(path),
                value,
                f"the flat key {config_key(field)} = {flat[field]!r} sets it for queue "
                "`default` too; give each setting once",
                fix=f"remove {config_key(field)} or {path} from Pulumi.<stack>.yaml",
            )
        flat[field] = value


def _is_default(field: str, value: Any) -> bool:
    info = QueueConfig.model_fields[field]
    field_type: Any = Annotated[info.annotation, *info.metadata]  # the field with its checks
    try:
        parsed: Any = TypeAdapter(field_type).validate_python(value)
    except ValidationError:
        return False
    return bool(parsed == info.default)


def _queue_config(path: str, settings: Mapping[str, Any]) -> QueueConfig:
    try:
        return QueueConfig.model_validate(dict(settings))
    except ValidationError as exc:
        errors = [_queue_error(path, settings, error) for error in exc.errors()]
        raise ConfigError.combined(errors) from None


def _queue_error(path: str, settings: Mapping[str, Any], error: Any) -> ConfigError:
    inner = (error.get("ctx") or {}).get("error")
    if isinstance(inner, FieldProblem):
        key = config_key(f"{path}.{inner.field}")
        return ConfigError(key, inner.value, inner.problem, inner.fix)
    field = str(error["loc"][0]) if error["loc"] else "?"
    described = QueueConfig.model_fields.get(field)
    problem = str(inner) if isinstance(inner, ValueError) else error["msg"]
    if not isinstance(inner, ValueError) and described and described.description:
        problem = f"{problem} ({described.description.rstrip('.')})"
    return ConfigError(config_key(f"{path}.{field}"), settings.get(field), problem)


def _map_fix(field: str) -> str:
    key = config_key(field)
    return (
        f"write {key} as a YAML map in Pulumi.<stack>.yaml (README, Several queues) or set "
        f"one entry with `pulumi config set --path '{key}.NAME' VALUE`"
    )


def _config_error(exc: ValidationError, raw: Mapping[str, Any]) -> ConfigError:
    """Every pydantic error as one `ConfigError`, each naming the key to change."""
    return ConfigError.combined([_one_config_error(error, raw) for error in exc.errors()])


def _one_config_error(error: Any, raw: Mapping[str, Any]) -> ConfigError:
    context = error.get("ctx") or {}
    inner = context.get("error")
    if isinstance(inner, FieldProblem):
        fix = inner.fix or _fix_for(inner.field)
        return ConfigError(config_key(inner.field), inner.value, inner.problem, fix)
    # loc is (section, field, ...) for a field's own error; a map's entry adds its key.
    field = str(error["loc"][1]) if len(error["loc"]) > 1 else "?"
    if field in config_fields() and is_map(field) and len(error["loc"]) > 2:
        entry = str(error["loc"][2])
        value = (raw.get(field) or {}).get(entry)
        return ConfigError(config_key(f"{field}.{entry}"), value, error["msg"], _map_fix(field))
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
    if field in config_fields() and is_map(field):
        return _map_fix(field)
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
        raise ConfigError.combined(
            [
                ConfigError(
                    key,
                    pulumi.Config(PROJECT_NAME).get(key.split(":", 1)[1]),
                    "this key is not known (a typo?); Pulumi.yaml and the README's "
                    "configuration reference list the keys",
                    fix=f"rename it to a known key or remove it with `pulumi config rm {key}`",
                )
                for key in unknown
            ]
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
        elif is_map(field):
            raw[field] = _map_value(field, text)
        else:
            raw[field] = text
    return parse_config(raw)


def _map_value(field: str, text: str) -> dict[str, Any]:
    """A map key as Pulumi hands it over: JSON text of the YAML map (`queues`, `routes`)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    if not isinstance(value, dict):
        raise ConfigError(
            config_key(field), text, "expected a YAML map of NAME: value", _map_fix(field)
        )
    return value


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
