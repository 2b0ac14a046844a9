"""`python -m task_contracts ...`: see `task_contracts.cli`."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    try:
        from task_contracts.cli import main
    except ModuleNotFoundError as exc:
        # A fresh shell's `python` is not the project's: say which one to use.
        from contract.interpreter import foreign_interpreter_message

        print(foreign_interpreter_message("python -m task_contracts", exc), file=sys.stderr)
        sys.exit(2)
    sys.exit(main())
