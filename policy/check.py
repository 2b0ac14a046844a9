"""`python -m policy.check --plan FILE`: the pack's rules over an offline plan.

    python -m plan --stack prod --format json > plan.json
    python -m policy.check --plan plan.json

Exit status 0 when no rule is violated, 1 when some are (each printed with
its rule name, resource and fix), 2 when the input cannot be read. The stack
name comes from the plan; the dispatch deadline from `Pulumi.<stack>.yaml`
next to the plan's program (or `--dispatch-deadline`), as the pack reads it
from the stack config.

This is a pre-flight for pull requests and tests: it does not replace the
pack in `pulumi preview --policy-pack policy`, which sees the provider's own
view of every resource.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from plan.errors import PlanFormatError
from plan.model import Plan
from policy.rules import (
    DISPATCH_DEADLINE_CONFIG_KEY,
    QUEUES_CONFIG_KEY,
    ROUTES_CONFIG_KEY,
    PolicyInputError,
    StackContext,
    Violation,
    check_plan,
    context_from_config,
    dispatch_deadline_from_config,
)


def stack_context(stack: str, root: Path) -> StackContext:
    """What the stack rules read from `root/Pulumi.<stack>.yaml`, as the pack reads it."""
    path = root / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        return context_from_config(None)
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PolicyInputError(f"{path}: not valid YAML ({exc})") from None
    config = document.get("config") or {}
    return context_from_config(
        config.get(DISPATCH_DEADLINE_CONFIG_KEY),
        config.get(QUEUES_CONFIG_KEY),
        config.get(ROUTES_CONFIG_KEY),
    )


def stack_dispatch_deadline(stack: str, root: Path) -> int:
    """The longest dispatch deadline configured in `root/Pulumi.<stack>.yaml` (queue
    `default` and every other queue), or the default."""
    return stack_context(stack, root).dispatch_deadline_s


def plan_violations(plan: Plan) -> list[Violation]:
    """Every rule over a plan, with the queues, routes and dispatch deadlines the plan
    exports (the values the program read from the stack config, which the pack reads
    there too)."""
    return check_plan(plan, plan.stack)


def format_violations(violations: list[Violation]) -> str:
    return "\n".join(f"[{v.rule}] {v.urn or '(stack)'}\n    {v.message}" for v in violations)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m policy.check",
        description="Run the policy pack's rules over a plan from `python -m plan --format json`",
    )
    parser.add_argument("--plan", required=True, help="plan JSON file, or - for stdin")
    parser.add_argument("--stack", help="stack name (default: the plan's own)")
    parser.add_argument(
        "--dispatch-deadline",
        help="dispatch deadline like 600s (default: from Pulumi.<stack>.yaml, else 600s)",
    )
    parser.add_argument(
        "--root", default=".", help="folder holding Pulumi.<stack>.yaml (default: .)"
    )
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.plan == "-" else Path(args.plan).read_text()
        plan = Plan.loads(text)
        stack = args.stack or plan.stack
        if not stack:
            raise PolicyInputError("the plan names no stack; pass --stack S")
        deadline = (
            dispatch_deadline_from_config(args.dispatch_deadline)
            if args.dispatch_deadline
            else stack_dispatch_deadline(stack, Path(args.root))
        )
        violations = check_plan(plan, stack, deadline)
    except (OSError, json.JSONDecodeError, PlanFormatError, PolicyInputError) as exc:
        print(f"policy.check: cannot check {args.plan}: {exc}", file=sys.stderr)
        return 2
    if violations:
        print(format_violations(violations))
        print(f"{len(violations)} policy violation(s) in stack {stack}")
        return 1
    print(f"stack {stack}: no policy violation ({len(plan.resources)} resources checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
