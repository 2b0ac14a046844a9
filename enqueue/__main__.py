"""Entry point of ``python -m enqueue`` (see enqueue/cli.py and enqueue/README.md)."""

import sys

if __name__ == "__main__":
    # google-api-core imports aiohttp when it is installed (for async REST clients
    # of long-running operations, which this command never uses): 0.1 s, a fifth
    # of every run's start-up. None in sys.modules makes that import fail as if
    # aiohttp were missing, which google-api-core and google-auth treat as optional.
    sys.modules.setdefault("aiohttp", None)  # type: ignore[arg-type]
    try:
        from enqueue.cli import main

        # Inside the try: a command imports the Cloud Tasks client only when it runs
        # (so that --help stays fast), which is where a foreign interpreter fails.
        code = main()
    except ModuleNotFoundError as exc:
        # A fresh shell's `python` is not the project's: say which one to use.
        from contract.interpreter import foreign_interpreter_message

        print(foreign_interpreter_message("python -m enqueue", exc), file=sys.stderr)
        sys.exit(2)
    sys.exit(code)
