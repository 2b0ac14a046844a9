"""Entry point of ``python -m ops`` (see ops/cli.py and the README, Operations)."""

import sys

if __name__ == "__main__":
    try:
        from ops.cli import main

        # Inside the try: commands import the clients only when they run (so that
        # --help stays fast), which is where a foreign interpreter fails.
        code = main()
    except ModuleNotFoundError as exc:
        from contract.interpreter import foreign_interpreter_message

        print(foreign_interpreter_message("python -m ops", exc), file=sys.stderr)
        sys.exit(2)
    sys.exit(code)
