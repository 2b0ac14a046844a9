"""Entry point of ``python -m enqueue`` (see enqueue/cli.py and enqueue/README.md)."""

import sys

from enqueue.cli import main

if __name__ == "__main__":
    sys.exit(main())
