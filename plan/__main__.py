"""`python -m plan ...`: see `plan.cli`."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    try:
        from plan.cli import main
    except ModuleNotFoundError as exc:
        # A fresh shell's `python` is not the project's: say which one to use.
        print(
            f"plan: {exc} in {sys.executable}; run it with the project's interpreter, "
            ".venv/bin/python -m plan (after `make setup`), or activate .venv first",
            file=sys.stderr,
        )
        sys.exit(2)
    sys.exit(main())
