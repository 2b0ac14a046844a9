"""`python -m devstack plan` and `python -m devstack snapshot`.

plan      evaluate the program for a stack offline and print it as text, JSON or
          Mermaid; with --diff, print what differs from the committed snapshot
          (exit 0 whether or not it differs: a difference is information).
snapshot  rewrite tests/snapshots/plan-<stack>.json for one stack or all of them,
          after an intended change (`make snapshots`).

Exit codes: 0 done, 1 the plan could not be made (bad stack config, unknown
stack, missing snapshot), with the reason on stderr. This module deliberately
holds no plan logic: `devstack.plan` evaluates and `devstack.plan_render` renders.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from devstack.plan import (
    REPO_ROOT,
    PlanError,
    available_stacks,
    evaluate,
    load_snapshot,
    snapshot_path,
    write_snapshot,
)
from devstack.plan_render import diff_plans, render_diff, render_mermaid, render_text

FORMATS = ("text", "json", "mermaid")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _errors() -> tuple[type[Exception], ...]:
    from components.config import ConfigError

    return (ConfigError, PlanError)


def cmd_plan(args: argparse.Namespace) -> int:
    root: Path = args.root
    try:
        plan = evaluate(args.stack, root)
        if args.diff:
            diff = diff_plans(load_snapshot(args.stack, root), plan)
            if args.format == "json":
                sys.stdout.write(json.dumps(diff.to_json(), indent=2) + "\n")
            else:
                sys.stdout.write(render_diff(diff, args.stack))
            return 0
    except _errors() as exc:
        return _fail(str(exc))
    if args.format == "json":
        sys.stdout.write(plan.dumps())
    elif args.format == "mermaid":
        sys.stdout.write(render_mermaid(plan))
    else:
        sys.stdout.write(render_text(plan))
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    root: Path = args.root
    stacks = available_stacks(root) if args.all else [args.stack]
    if not stacks:
        return _fail(f"no Pulumi.<stack>.yaml in {root}")
    for stack in stacks:
        try:
            plan = evaluate(stack, root)
        except _errors() as exc:
            return _fail(str(exc))
        previous = snapshot_path(stack, root)
        summary = "new"
        if previous.is_file():
            try:
                diff = diff_plans(load_snapshot(stack, root), plan)
                summary = (
                    "unchanged"
                    if diff.empty
                    else f"+{len(diff.added)} ~{len(diff.modified)} -{len(diff.removed)}"
                )
            except (KeyError, ValueError):
                summary = "replaced an unreadable snapshot"
        path = write_snapshot(plan, root)
        print(f"{path.relative_to(root)}: {len(plan.resources)} resources ({summary})")
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `plan` and `snapshot` to `python -m devstack`."""
    plan = commands.add_parser(
        "plan",
        help="the resource plan of a stack, offline",
        description="Evaluate __main__.py for a stack under Pulumi's mocks and print the plan.",
    )
    plan.add_argument(
        "--stack", default="dev", help="stack name (Pulumi.<stack>.yaml); default dev"
    )
    plan.add_argument("--format", choices=FORMATS, default="text", help="default text")
    plan.add_argument(
        "--diff",
        action="store_true",
        help="compare with tests/snapshots/plan-<stack>.json and print what changes",
    )
    plan.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    plan.set_defaults(func=cmd_plan)

    snapshot = commands.add_parser(
        "snapshot",
        help="rewrite the committed plan snapshot(s)",
        description="Rewrite tests/snapshots/plan-<stack>.json after an intended change.",
    )
    which = snapshot.add_mutually_exclusive_group()
    which.add_argument("--stack", default="dev", help="one stack; default dev")
    which.add_argument("--all", action="store_true", help="every Pulumi.<stack>.yaml")
    snapshot.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    snapshot.set_defaults(func=cmd_snapshot)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m devstack.plan_cli plan ...`), same sub-commands."""
    parser = argparse.ArgumentParser(prog="python -m devstack.plan_cli")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
