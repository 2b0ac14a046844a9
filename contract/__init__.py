"""Names and limits shared by every part of the project, defined once.

The Pulumi program exports its outputs under these names; the enqueue helper,
the local stack and the smoke test read them back with the same constants.
This package deliberately has no third-party imports, so the worker image, the
helper and the program can all depend on it without pulling each other in.
"""

from contract.names import (
    EMULATOR_HOST_ENV,
    LOCAL_OUTPUT_KEYS,
    OPTIONAL_STACK_OUTPUT_KEYS,
    OUTPUT_AUDIENCE,
    OUTPUT_DISPATCH_DEADLINE,
    OUTPUT_EMULATOR_HOST,
    OUTPUT_EMULATOR_URL,
    OUTPUT_INVOKER_EMAIL,
    OUTPUT_LOCATION,
    OUTPUT_PROJECT,
    OUTPUT_QUEUE,
    OUTPUT_SERVICE_URL,
    STACK_OUTPUT_KEYS,
)

__all__ = [
    "EMULATOR_HOST_ENV",
    "LOCAL_OUTPUT_KEYS",
    "OPTIONAL_STACK_OUTPUT_KEYS",
    "OUTPUT_AUDIENCE",
    "OUTPUT_DISPATCH_DEADLINE",
    "OUTPUT_EMULATOR_HOST",
    "OUTPUT_EMULATOR_URL",
    "OUTPUT_INVOKER_EMAIL",
    "OUTPUT_LOCATION",
    "OUTPUT_PROJECT",
    "OUTPUT_QUEUE",
    "OUTPUT_SERVICE_URL",
    "STACK_OUTPUT_KEYS",
]
