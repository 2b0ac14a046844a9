"""`python -m task_contracts`: write, check and compare the committed task contracts.

    python -m task_contracts export [--out DIR] [--check]
    python -m task_contracts diff --base DIR --head DIR [--fail-on-breaking]

`export` writes one `<type>.schema.json` per task type the worker of any stack
registers to `task_contracts/schemas/` (`make contracts`); with `--check` it
writes nothing and fails when the committed files differ from the models.
`diff` prints the "Task contracts" section of the PR comment (Markdown) for two
directories of contracts, the base's and the head's.

Exit codes: 0 done (a breaking change is reported, not an error: see
docs/ci.md, "Task contracts"), 1 unusable input or out-of-date contracts, with
the reason on stderr, 3 a breaking change under `--fail-on-breaking`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from task_contracts.compat import compare_contracts
from task_contracts.report import render_markdown
from task_contracts.store import (
    CONTRACTS_DIR,
    REPO_ROOT,
    ContractError,
    out_of_date,
    read_contracts,
    write_contracts,
)

PROG: Final = "python -m task_contracts"
EXIT_BREAKING: Final = 3


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def cmd_export(args: argparse.Namespace) -> int:
    from task_contracts.export import REGENERATE, contract_files, load_worker_registry

    root: Path = args.root
    out: Path = args.out if args.out is not None else root / CONTRACTS_DIR
    try:
        files = contract_files(load_worker_registry(root))
    except ContractError as exc:
        return _fail(str(exc))
    if args.check:
        if differ := out_of_date(files, out):
            return _fail(
                f"the task contracts in {out} differ from the payload models "
                f"({', '.join(differ)}): run `{REGENERATE}` and commit the result"
            )
        print(f"{out}: {len(files)} task contract(s) match the payload models")
        return 0
    for name, outcome in write_contracts(files, out).items():
        print(f"{out / name}: {outcome}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    try:
        diff = compare_contracts(read_contracts(args.base), read_contracts(args.head))
    except (ContractError, ValueError) as exc:
        return _fail(str(exc))
    sys.stdout.write(render_markdown(diff, base_label=args.base_label))
    if diff.breaking and args.fail_on_breaking:
        print(f"{len(diff.breaking)} breaking task contract change(s)", file=sys.stderr)
        return EXIT_BREAKING
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=PROG, description="The task types' payload contracts (JSON Schema per type)."
    )
    commands = top.add_subparsers(dest="command", required=True)

    export = commands.add_parser(
        "export",
        help="write one <type>.schema.json per task type (make contracts)",
        description="Write the payload contract of every task type the worker of any stack "
        f"registers (built-ins and each stack's task_modules) to {CONTRACTS_DIR}/.",
    )
    export.add_argument("--out", type=Path, help=f"directory; default {CONTRACTS_DIR}/")
    export.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when the files differ"
    )
    export.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    export.set_defaults(func=cmd_export)

    diff = commands.add_parser(
        "diff",
        help="the PR comment's Task contracts section: base against head",
        description="Compare two directories of task contracts and print, in Markdown, "
        "which changed and which changes would make tasks already queued fail.",
    )
    diff.add_argument("--base", type=Path, required=True, help="the base's contracts")
    diff.add_argument("--head", type=Path, required=True, help="the change's contracts")
    diff.add_argument(
        "--base-label", default="the base branch", help="how the comment names the base"
    )
    diff.add_argument(
        "--fail-on-breaking",
        action="store_true",
        help=f"exit {EXIT_BREAKING} when a change is breaking (default: report only)",
    )
    diff.set_defaults(func=cmd_diff)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: int = args.func(args)
    return result
