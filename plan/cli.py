"""`python -m plan`: a stack's offline plan, and the committed snapshots.

    python -m plan [--stack S] [--format text|json|mermaid] [--diff | --cost]
    python -m plan snapshot [--stack S | --all]
    python -m plan cost --plan HEAD.json [--base BASE.json] [--format markdown|json]

The first form evaluates the program for a stack offline and prints it as
text, JSON or Mermaid; with --diff, what differs from the committed snapshot
(a difference is information, not an error). Every form then runs the policy
pack's rules over the plan (`policy.check`), as `pulumi preview --policy-pack
policy` will, and reports on stderr. `snapshot` rewrites
tests/snapshots/plan-<stack>.json for one stack or all of them after an
intended change, and redraws the plan diagrams in the docs (`make snapshots`).
With --cost, the stack's estimated monthly cost and its queues' capacity
(`plan.cost_report`); `cost` prints the same for plan files, a base plan's
cost beside the head's (the preview workflow's PR comment).

Exit codes: 0 done, 1 the plan could not be made (bad stack config, unknown
stack, missing snapshot), with the reason on stderr, or (text plan only) a
policy rule is violated. This module deliberately
holds no plan logic: `plan.engine` evaluates, `plan.render`/`plan.diff` render.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from plan.diagrams import DOCUMENTED_STACK, refresh_diagrams
from plan.diff import diff_plans, render_diff
from plan.engine import evaluate
from plan.errors import PlanError, PlanFormatError
from plan.model import Plan
from plan.render import render_mermaid, render_text
from plan.snapshots import load_snapshot, snapshot_path, write_snapshot
from plan.stack_config import REPO_ROOT, available_stacks

FORMATS = ("text", "json", "mermaid")
PROG = "python -m plan"


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _errors() -> tuple[type[Exception], ...]:
    from components.config import ConfigError

    return (ConfigError, PlanError)


def _report_policy(plan: Plan) -> int:
    """The policy pack's rules over the plan, as `pulumi preview --policy-pack policy`
    will run them, so the plan says before any preview what the pack will refuse.
    The report goes to stderr (stdout stays the plan); 1 when a rule is violated."""
    from policy.check import format_violations, plan_violations

    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    violations = plan_violations(plan)
    if not violations:
        print(f"policy: no violation in stack {plan.stack}", file=sys.stderr)
        return 0
    print(format_violations(violations), file=sys.stderr)
    print(
        f"policy: {len(violations)} violation(s) in stack {plan.stack}; "
        "`pulumi preview --policy-pack policy` refuses them (mandatory rules)",
        file=sys.stderr,
    )
    return 1


def cmd_plan(args: argparse.Namespace) -> int:
    root: Path = args.root
    try:
        plan = evaluate(args.stack, root)
        if args.cost:
            from plan import cost_report

            report = cost_report.render_json if args.format == "json" else cost_report.render_text
            sys.stdout.write(report(plan))
            return _report_policy(plan) if args.format == "text" else 0
        if args.diff:
            diff = diff_plans(load_snapshot(args.stack, root), plan)
            if args.format == "json":
                sys.stdout.write(json.dumps(diff.to_json(), indent=2) + "\n")
            else:
                sys.stdout.write(render_diff(diff, args.stack))
    except _errors() as exc:
        return _fail(str(exc))
    if not args.diff:
        if args.format == "json":
            sys.stdout.write(plan.dumps())
        elif args.format == "mermaid":
            sys.stdout.write(render_mermaid(plan))
        else:
            sys.stdout.write(render_text(plan))
    violated = _report_policy(plan)
    # The text plan is for people: a violation is its exit status. The diff is
    # information, and JSON and Mermaid feed other tools (the preview workflow runs
    # policy.check on the JSON itself).
    return violated if args.format == "text" and not args.diff else 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    root: Path = args.root
    stacks = available_stacks(root) if args.all else [args.stack]
    if not stacks:
        return _fail(f"no Pulumi.<stack>.yaml in {root}")
    plans = {}
    for stack in stacks:
        try:
            plan = evaluate(stack, root)
        except _errors() as exc:
            return _fail(str(exc))
        plans[stack] = plan
        summary = "new"
        if snapshot_path(stack, root).is_file():
            try:
                diff = diff_plans(load_snapshot(stack, root), plan)
                summary = "unchanged" if diff.empty else diff.counts
            except (KeyError, ValueError, PlanFormatError):
                summary = "replaced an unreadable snapshot"
        path = write_snapshot(plan, root)
        print(f"{path.relative_to(root)}: {len(plan.resources)} resources ({summary})")
    for doc in refresh_diagrams(root, plans):
        print(f"{doc.relative_to(root)}: plan diagram of stack {DOCUMENTED_STACK} redrawn")
    return 0


def plan_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Evaluate __main__.py for a stack under Pulumi's mocks and print the plan.",
        epilog=f"Rewrite the committed snapshots with `{PROG} snapshot --help`.",
    )
    parser.add_argument(
        "--stack", default="dev", help="stack name (Pulumi.<stack>.yaml); default dev"
    )
    parser.add_argument("--format", choices=FORMATS, default="text", help="default text")
    parser.add_argument(
        "--diff",
        action="store_true",
        help="compare with tests/snapshots/plan-<stack>.json and print what changes",
    )
    parser.add_argument(
        "--cost",
        action="store_true",
        help="the estimated monthly cost, item by item, and each queue's capacity",
    )
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    parser.set_defaults(func=cmd_plan)
    return parser


def cmd_cost(args: argparse.Namespace) -> int:
    from plan.cost_report import render_json, render_markdown

    try:
        head = Plan.loads(Path(args.plan).read_text())
        base = Plan.loads(Path(args.base).read_text()) if args.base else None
    except (OSError, ValueError, PlanFormatError) as exc:
        return _fail(f"cannot read a plan: {exc}")
    render = render_json if args.format == "json" else render_markdown
    sys.stdout.write(render(head, base))
    return 0


def cost_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} cost",
        description="The estimated monthly cost and capacity of a plan file "
        f"(`{PROG} --format json`), with a base plan's cost beside it.",
    )
    parser.add_argument("--plan", required=True, help="the plan JSON to price")
    parser.add_argument("--base", help="a base plan JSON (the base branch's snapshot)")
    parser.add_argument("--format", choices=("markdown", "json"), default="markdown")
    parser.set_defaults(func=cmd_cost)
    return parser


def snapshot_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} snapshot",
        description="Rewrite tests/snapshots/plan-<stack>.json after an intended change, "
        "and redraw the plan diagrams embedded in README.md and docs/ from the dev stack.",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--stack", default="dev", help="one stack; default dev")
    which.add_argument("--all", action="store_true", help="every Pulumi.<stack>.yaml")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    parser.set_defaults(func=cmd_snapshot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["snapshot"]:
        args = snapshot_parser().parse_args(args_list[1:])
    elif args_list[:1] == ["cost"]:
        args = cost_parser().parse_args(args_list[1:])
    else:
        args = plan_parser().parse_args(args_list)
    result: int = args.func(args)
    return result
