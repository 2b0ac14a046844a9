"""A stack's config as the Pulumi CLI hands it to the program.

`load_stack_config(stack)` reads `Pulumi.<stack>.yaml`, namespaces bare keys
under the project (`contract.resources.config_key`), turns every value into the
string the CLI passes (structured values as JSON), merges in `Pulumi.yaml`'s
declared defaults and refuses what the CLI refuses (a declared key without a
default, missing) or what an offline plan cannot do (decrypt a secret).

Deliberately not here: validating the values (the program's `components.config`
does, and its `ConfigError` reaches the user unchanged) and evaluating the program.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from contract.resources import PROJECT_NAME, config_key
from plan.errors import PlanError

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The repository: the program (`__main__.py`), `Pulumi.yaml` and the stack files."""


def stack_file(stack: str, root: Path = REPO_ROOT) -> Path:
    return root / f"Pulumi.{stack}.yaml"


def available_stacks(root: Path = REPO_ROOT) -> list[str]:
    """Stacks with a committed `Pulumi.<stack>.yaml`."""
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def _config_text(value: object) -> str:
    # The CLI hands every value to the program as a string; structured values as JSON.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _full_key(key: str) -> str:
    return key if ":" in key else config_key(key)


def load_stack_config(stack: str, root: Path = REPO_ROOT) -> dict[str, str]:
    """`Pulumi.<stack>.yaml`'s config as the CLI would pass it: namespaced keys, string values."""
    path = stack_file(stack, root)
    if not path.is_file():
        known = ", ".join(available_stacks(root)) or "none"
        raise PlanError(
            f"no stack file {path.name} in {root}; known stacks: {known}. "
            f"Create it (see docs/deploying.md) or pick one with --stack."
        )
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PlanError(f"{path.name} is not valid YAML: {exc}") from exc
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise PlanError(f"{path.name}: `config` must be a mapping of key: value")
    result: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict) and "secure" in value:
            raise PlanError(
                f"{path.name}: {key} is an encrypted secret; the offline plan cannot decrypt "
                "it. Keep secrets out of the pipeline's config or pass them through ESC."
            )
        result[_full_key(key)] = _config_text(value)
    return _apply_project_defaults(result, stack, root)


def _apply_project_defaults(config: dict[str, str], stack: str, root: Path) -> dict[str, str]:
    """Merge in Pulumi.yaml's declared defaults, as the CLI does before running the program.

    The CLI also refuses a stack that lacks a project key declared without a
    default; the offline plan refuses it the same way, so it cannot pass here and
    fail at `pulumi up`.
    """
    try:
        document = yaml.safe_load((root / "Pulumi.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PlanError(f"cannot read Pulumi.yaml in {root}: {exc}") from exc
    missing = []
    for key, spec in (document.get("config") or {}).items():
        full_key = _full_key(key)
        if full_key in config:
            continue
        if isinstance(spec, dict) and "default" in spec:
            config[full_key] = _config_text(spec["default"])
        elif full_key.startswith(f"{PROJECT_NAME}:"):
            missing.append(key)
    if missing:
        raise PlanError(
            f"Stack '{stack}' is missing configuration values {', '.join(sorted(missing))} "
            "(declared in Pulumi.yaml without a default, so the Pulumi CLI requires them): "
            "set them in the stack file or give them a default in Pulumi.yaml."
        )
    return config
