"""The CrossGuard policy pack: every rule of `policy.rules`, enforcement mandatory.

Run with the policy's own interpreter (policy/.venv, made by `make policy-venv`):

    pulumi preview --stack dev --policy-pack policy

The CLI starts it as `python -m pulumi.policy ENGINE policy/`, which runs this
file; the pack then serves Pulumi's Analyzer gRPC API and prints its port.
`python -m policy.check --plan FILE` instead runs the same rules over an
offline plan (`python -m plan --format json`) from the main venv,
without Pulumi's engine; that is what the tests and the PR workflow do.

This module deliberately contains no rule logic: a violation found here and
one found by the tests come from the same function in `policy/rules.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# The pack is started from its own directory by the Pulumi CLI; `policy.rules` imports
# `contract`, which lives at the repository root next to this folder.
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)


PACK_NAME = "cloud-tasks-pipeline-policy"


def build_policies() -> list[Any]:
    """One mandatory pulumi_policy policy per rule of `policy.rules`."""
    import pulumi
    from pulumi_policy import (  # type: ignore[import-not-found]  # only in policy/.venv
        EnforcementLevel,
        ReportViolation,
        ResourceValidationArgs,
        ResourceValidationPolicy,
        StackValidationArgs,
        StackValidationPolicy,
    )

    from policy.rules import (
        DISPATCH_DEADLINE_CONFIG_KEY,
        QUEUES_CONFIG_KEY,
        RESOURCE_RULES,
        ROUTES_CONFIG_KEY,
        STACK_RULES,
        ResourceRule,
        StackResource,
        StackRule,
        context_from_config,
    )

    def config_value(full_key: str) -> str | None:
        project, key = full_key.split(":", 1)
        return pulumi.Config(project).get(key)

    def resource_policy(rule: ResourceRule) -> ResourceValidationPolicy:
        def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
            for message in rule.check(args.resource_type, args.props, pulumi.get_stack()):
                report_violation(message, None)

        return ResourceValidationPolicy(
            name=rule.name,
            description=rule.description,
            validate=validate,
            enforcement_level=EnforcementLevel.MANDATORY,
        )

    def stack_policy(rule: StackRule) -> StackValidationPolicy:
        def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
            resources = [
                StackResource(type=r.resource_type, urn=r.urn, name=r.name, props=r.props)
                for r in args.resources
            ]
            # The queues' keys, deadlines and routes come from the stack config (maps
            # arrive as JSON text); the queues' ids are not known at preview.
            context = context_from_config(
                config_value(DISPATCH_DEADLINE_CONFIG_KEY),
                config_value(QUEUES_CONFIG_KEY),
                config_value(ROUTES_CONFIG_KEY),
            )
            for message, urn in rule.check(resources, pulumi.get_stack(), context):
                report_violation(message, urn)

        return StackValidationPolicy(
            name=rule.name,
            description=rule.description,
            validate=validate,
            enforcement_level=EnforcementLevel.MANDATORY,
        )

    return [resource_policy(r) for r in RESOURCE_RULES] + [stack_policy(r) for r in STACK_RULES]


def serve() -> None:
    """Serve the pack to the Pulumi engine (blocks; PolicyPack prints the port)."""
    from pulumi_policy import (
        EnforcementLevel,
        PolicyPack,
    )

    PolicyPack(
        name=PACK_NAME,
        enforcement_level=EnforcementLevel.MANDATORY,
        policies=build_policies(),
    )


if __name__ == "__main__":
    serve()
