"""Entry point of ``python -m enqueue`` (see enqueue/cli.py and enqueue/README.md)."""

import sys

if __name__ == "__main__":
    try:
        from enqueue.cli import main
    except ModuleNotFoundError as exc:
        # A fresh shell's `python` is not the project's: say which one to use.
        from contract.interpreter import foreign_interpreter_message

        print(foreign_interpreter_message("python -m enqueue", exc), file=sys.stderr)
        sys.exit(2)
    sys.exit(main())
