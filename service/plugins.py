"""What the environment plugs into the worker: task modules, dead-letter sink, store.

* `load_task_modules`: imports `service.handlers` (the built-in types) and each
  module of `TASKS_EXTRA_MODULES`; importing a module registers its types in
  `service.registry`.
* `load_dead_letter_sink` / `load_idempotency_store`: the object named by
  `TASKS_DEAD_LETTER_SINK` / `TASKS_IDEMPOTENCY_STORE` (`module:attribute`; a
  class or factory is called once), checked for the protocol's methods; dead
  letters also go to the bucket `TASKS_DEAD_LETTER_BUCKET` names
  (`service.gcs_dead_letters`), before the named sink when both are set.

Every failure is a `ConfigError` naming the variable and what to fix, which
`python -m service` turns into exit code 2 before it listens. This module
deliberately does not search for modules or install anything: what runs is what
the environment names and the image contains.
"""

from __future__ import annotations

import importlib
from typing import Any, Final, cast

from service.config import ConfigError, Settings
from service.deadletter import DeadLetter, DeadLetterSink
from service.gcs_dead_letters import GcsDeadLetterSink
from service.idempotency import IdempotencyStore

BUILTIN_HANDLERS: Final = "service.handlers"
_STORE_METHODS: Final = ("claim", "complete", "release")


def load_task_modules(modules: tuple[str, ...]) -> None:
    """Import the built-in handlers and `TASKS_EXTRA_MODULES`, which register types."""
    for module in (BUILTIN_HANDLERS, *modules):
        source = "built in" if module == BUILTIN_HANDLERS else "from TASKS_EXTRA_MODULES"
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(
                f"cannot import task module {module!r} ({source}): {exc}; "
                "check the module path and that it is on PYTHONPATH in the image"
            ) from exc
        except Exception as exc:  # the module's own code failed: one line, no traceback
            where = _innermost_frame(exc)
            raise ConfigError(
                f"task module {module!r} ({source}) failed while loading: "
                f"{type(exc).__name__}: {exc}{where}"
            ) from exc


def _innermost_frame(exc: BaseException) -> str:
    """` (file, line N)` of the code that raised, for a one-line error."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f" ({tb.tb_frame.f_code.co_filename}, line {tb.tb_lineno})" if tb else ""


def load_object(spec: str, variable: str) -> Any:
    """`module:attribute` from the environment; a class or factory is called once."""
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{variable}={spec!r}: cannot import {module_name!r}: {exc}") from exc
    try:
        target = getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"{variable}={spec!r}: {module_name} has no {attribute!r}") from None
    # An instance (it has the protocol's methods) is used as is; a class or a
    # factory function is called with no arguments.
    is_instance = not isinstance(target, type) and (
        hasattr(target, "record") or hasattr(target, "claim")
    )
    if not is_instance and callable(target):
        target = target()
    return target


def load_dead_letter_sink(settings: Settings) -> DeadLetterSink | None:
    """The bucket of `TASKS_DEAD_LETTER_BUCKET` (`service.gcs_dead_letters`) and the sink
    `TASKS_DEAD_LETTER_SINK` names: both when both are set, or None."""
    sinks = [s for s in (_bucket_sink(settings), _named_sink(settings)) if s is not None]
    if len(sinks) > 1:
        return BothSinks(sinks[0], sinks[1])
    return sinks[0] if sinks else None


class BothSinks:
    """The bucket first, then the team's own sink; either failing fails the record."""

    def __init__(self, first: DeadLetterSink, second: DeadLetterSink) -> None:
        self.first, self.second = first, second

    async def record(self, letter: DeadLetter) -> None:
        await self.first.record(letter)
        await self.second.record(letter)


def _bucket_sink(settings: Settings) -> DeadLetterSink | None:
    if not settings.dead_letter_bucket:
        return None
    return GcsDeadLetterSink(settings.dead_letter_bucket, project=settings.project)


def _named_sink(settings: Settings) -> DeadLetterSink | None:
    if not settings.dead_letter_sink:
        return None
    sink = load_object(settings.dead_letter_sink, "TASKS_DEAD_LETTER_SINK")
    if not callable(getattr(sink, "record", None)):
        raise ConfigError(
            f"TASKS_DEAD_LETTER_SINK={settings.dead_letter_sink!r} has no record(letter) "
            "method; see service.DeadLetterSink"
        )
    return cast(DeadLetterSink, sink)


def load_idempotency_store(settings: Settings) -> IdempotencyStore | None:
    """The store `TASKS_IDEMPOTENCY_STORE` names, or None when it is not set."""
    if not settings.idempotency_store:
        return None
    store = load_object(settings.idempotency_store, "TASKS_IDEMPOTENCY_STORE")
    missing = [m for m in _STORE_METHODS if not hasattr(store, m)]
    if missing:
        raise ConfigError(
            f"TASKS_IDEMPOTENCY_STORE={settings.idempotency_store!r} lacks "
            f"{', '.join(missing)}; see service.IdempotencyStore"
        )
    return cast(IdempotencyStore, store)
