"""`python -m devstack {up,down,status,watch,logs,exec,reset,export,import}`: the local stack.

`up`, `down` and `status` live in `devstack.local_cli`; `watch` (live signals against
the alerts' thresholds) in `devstack.signals_view`; the daily tools around a
stack (logs, exec, data) in `devstack.tools_cli`. The offline plan is its own
package: `python -m plan` (the `plan` and `snapshot` words here only say so).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Run the Pulumi program's plan on this machine (the plan: python -m plan).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    try:
        from devstack import local_cli, signals_view, tools_cli
    except ModuleNotFoundError as exc:
        # A fresh shell's `python` is not the project's: say which one to use.
        from contract.interpreter import foreign_interpreter_message

        print(foreign_interpreter_message("python -m devstack", exc), file=sys.stderr)
        return 2

    common = local_cli.common_arguments()
    local_cli.register(commands, common)  # up, down, status
    signals_view.register(commands, common)  # watch
    tools_cli.register(commands, common)  # logs, exec, reset, export, import
    moved = {"plan": "python -m plan", "snapshot": "python -m plan snapshot"}
    words = sys.argv[1:] if argv is None else argv
    if words and words[0] in moved:
        print(f"devstack: the offline plan moved: run {moved[words[0]]} ...", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
