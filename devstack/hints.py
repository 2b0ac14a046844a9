"""How to spell a command in a hint so that it runs when pasted as printed."""

from __future__ import annotations

from contract.interpreter import python_command


def python() -> str:
    """This interpreter as a user should type it (`contract.interpreter`)."""
    return python_command()
