"""What bootstrap needs to know of the main program's stack, read from its stack file.

The pipeline's service accounts and image repository are created here, before the
first deploy, but named by the main stack's config (`account_prefix`,
`repository_id`, `gcp:region`). Reading them from `Pulumi.<stack>.yaml`, with
`Pulumi.yaml`'s defaults, keeps one definition of each name: the main program
refers to exactly the accounts and repository this program creates.

Deliberately not here: validating the whole main config (the main program does).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from components.config import IdentitiesConfig
from components.values import REPOSITORY_RE
from contract.resources import GCP_PROJECT_KEY, GCP_REGION_KEY, config_key
from plan.errors import PlanError
from plan.stack_config import REPO_ROOT, load_stack_config


class MainStackError(ValueError):
    """The main stack's file is missing or names something bootstrap cannot create."""


@dataclass(frozen=True)
class MainStack:
    """The names bootstrap creates for one stack of the main program."""

    stack: str
    project: str
    region: str
    identities: IdentitiesConfig
    """The main program's own section: the account ids come from it (one definition)."""
    repository_id: str
    trace_export: bool = False
    """The worker exports its spans to Cloud Trace: its runtime account needs the agent role."""


def read_main_stack(stack: str, root: Path = REPO_ROOT) -> MainStack:
    """`Pulumi.<stack>.yaml` of the main program, with `Pulumi.yaml`'s defaults applied."""
    try:
        config = load_stack_config(stack, root)
    except PlanError as exc:
        raise MainStackError(
            f"bootstrap creates the accounts and repository of the main stack {stack!r}, "
            f"named by its stack file: {exc}. Set `main_stack` in bootstrap/ to the main "
            "stack's name, or create its stack file first"
        ) from None
    project = config.get(GCP_PROJECT_KEY, "")
    region = config.get(GCP_REGION_KEY, "")
    prefix = config.get(config_key("account_prefix"), "")
    repository = config.get(config_key("repository_id"), "")
    if not project or not region:
        raise MainStackError(
            f"Pulumi.{stack}.yaml must set {GCP_PROJECT_KEY} and {GCP_REGION_KEY}: bootstrap "
            "creates the stack's accounts in that project and its repository in that region"
        )
    try:
        identities = IdentitiesConfig(account_prefix=prefix)
    except ValidationError:
        raise MainStackError(
            f"Pulumi.{stack}.yaml: account_prefix {prefix!r} is not a valid prefix "
            "(`python -m plan --stack STACK` explains what is)"
        ) from None
    if not REPOSITORY_RE.match(repository):
        raise MainStackError(
            f"Pulumi.{stack}.yaml: repository_id {repository!r} is not a valid repository id "
            "(`python -m plan --stack STACK` explains what is)"
        )
    trace_export = config.get(config_key("trace_export"), "false").strip().lower() == "true"
    return MainStack(stack, project, region, identities, repository, trace_export)
