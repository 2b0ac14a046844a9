"""`python -m devstack {plan,snapshot,up,down,status}` (ARCHITECTURE.md, "Commands").

The offline plan commands live in `devstack.plan_cli`, the local realisation in
`devstack.local_cli`; each registers its own sub-commands here.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Plan the Pulumi program offline and run it on this machine.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    try:
        from devstack import local_cli, plan_cli
    except ModuleNotFoundError as exc:
        # A fresh shell's `python` is not the project's: say which one to use.
        print(
            f"devstack: {exc} in {sys.executable}; run it with the project's interpreter, "
            ".venv/bin/python -m devstack (after `make setup`), or activate .venv first",
            file=sys.stderr,
        )
        return 2

    plan_cli.register(commands)  # plan, snapshot
    local_cli.register(commands)  # up, down, status
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
