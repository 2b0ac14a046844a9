"""Structured logs in the shape Cloud Logging reads from a container's stdout.

One JSON object per line with `severity`, `message`, `time`, the special
`logging.googleapis.com/trace` / `spanId` / `trace_sampled` fields when the
request carried `X-Cloud-Trace-Context`, the task fields of the delivery being
handled (from a context variable, so a handler's own `logging` calls carry them
too) and any `extra={"fields": {...}}` of the call. Exceptions go into
`stack_trace`, which Error Reporting picks up.

It deliberately does not ship logs anywhere (no Cloud Logging client): on Cloud
Run stdout is collected by the platform, and locally it is read by humans and
tests. It does not sample or rate-limit either.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, TextIO

from pydantic_core import to_json

TRACE_FIELD: Final = "logging.googleapis.com/trace"
SPAN_FIELD: Final = "logging.googleapis.com/spanId"
SAMPLED_FIELD: Final = "logging.googleapis.com/trace_sampled"

# Fields of the delivery being handled; set per request by the app.
_NO_FIELDS: Final[Mapping[str, Any]] = MappingProxyType({})
_delivery_fields: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "delivery_fields", default=_NO_FIELDS
)

# Cloud Logging's LogSeverity names; Python's levels map onto them one to one
# except NOTSET, which would otherwise become "DEFAULT".
_SEVERITY: Final = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


@contextmanager
def delivery_fields(fields: Mapping[str, Any]) -> Iterator[None]:
    """Attach `fields` to every log line emitted inside the block."""
    token = _delivery_fields.set({**_delivery_fields.get(), **fields})
    try:
        yield
    finally:
        _delivery_fields.reset(token)


class CloudLoggingFormatter(logging.Formatter):
    """Render a record as one line of JSON for Cloud Logging."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "logger": record.name,
        }
        entry.update(_delivery_fields.get())
        extra = getattr(record, "fields", None)
        if isinstance(extra, Mapping):
            entry.update(extra)
        if record.exc_info and record.exc_info[0] is not None:
            entry["stack_trace"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack_trace"] = record.stack_info
        # pydantic_core's encoder: same compact JSON as json.dumps, several times faster
        # on the per-task hot path; `fallback=str` keeps odd values loggable.
        return to_json(entry, fallback=str).decode()


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every logger (the worker's, uvicorn's, the handlers') to `stream` as JSON.

    Replaces the root handlers so a library's own `basicConfig` cannot add a
    second, unstructured copy of each line.
    """
    # The Logging HOWTO's "Optimization" switches: the JSON line carries none of
    # these, and collecting them (a getpid syscall, thread lookups, a stack walk for
    # the caller) was a measurable share of the per-task cost.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(CloudLoggingFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # httpx logs every request at INFO: the certs fetches and each backend call of a
    # handler would double the volume; its warnings and errors still come through.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # The worker logs one line per task itself; a second access line per request
    # would double the log volume without adding a field.
    logging.getLogger("uvicorn.access").disabled = True
