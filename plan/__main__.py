"""`python -m plan ...`: see `plan.cli`."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    try:
        from plan.cli import main
    except ModuleNotFoundError as exc:
        # A fresh shell's `python` is not the project's: say which one to use.
        from contract.interpreter import foreign_interpreter_message

        print(foreign_interpreter_message("python -m plan", exc), file=sys.stderr)
        sys.exit(2)
    sys.exit(main())
