"""Queues declared at start-up: ``--queues-file FILE`` and ``--queue NAME[:KEY=VALUE,...]``.

A file holds queues in the shape ``gcloud tasks queues describe`` prints (the
REST JSON of a Queue: ``name``, ``rateLimits``, ``retryConfig``, ``state``,
``stackdriverLoggingConfig``, ``httpTarget``, ``appEngineRoutingOverride``, ...;
``gcloud beta``'s v2beta3 shape with ``appEngineHttpQueue``, ``type``,
``taskTtl``, ``tombstoneTtl`` too), as YAML or JSON: one queue per document, or
a list of queues. Output-only fields (``purgeTime``, ``stats``) are ignored, so
a describe output can be pasted as it is.

A flag declares one queue with ``gcloud tasks queues create``'s settings:
``--queue projects/P/locations/L/queues/Q:max-dispatches-per-second=5,max-attempts=3``.

Declarations are parsed (and every mistake reported, naming the file and
document or the flag) before anything starts; they are applied once the stored
state is loaded, so a restart with ``--data`` is idempotent: a declared queue
that does not exist is created, one that exists is set to exactly the declared
configuration (fields left out get Google's defaults, as UpdateQueue without a
mask does), and its state is set only when the declaration names one. Queues
that are not declared are left alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from google.cloud import tasks_v2, tasks_v2beta3
from google.protobuf import json_format

from contract.durations import DurationError, format_duration, parse_duration_s
from emulator import validation as v
from emulator.core import Emulator
from emulator.errors import ApiError
from emulator.rest_json import check_json_document
from emulator.v2beta3 import V2beta3Api

_OUTPUT_ONLY: Final = frozenset({"purgeTime", "purge_time", "stats"})
_V2BETA3_ONLY: Final = frozenset(
    {
        "appEngineHttpQueue",
        "app_engine_http_queue",
        "type",
        "taskTtl",
        "task_ttl",
        "tombstoneTtl",
        "tombstone_ttl",
    }
)
_STATES: Final = {"RUNNING": tasks_v2.Queue.State.RUNNING, "PAUSED": tasks_v2.Queue.State.PAUSED}

# --queue settings: gcloud tasks queues create's flag names -> (JSON path, kind).
FLAG_SETTINGS: Final = {
    "max-dispatches-per-second": (("rateLimits", "maxDispatchesPerSecond"), "number"),
    "max-concurrent-dispatches": (("rateLimits", "maxConcurrentDispatches"), "integer"),
    "max-attempts": (("retryConfig", "maxAttempts"), "integer"),
    "max-retry-duration": (("retryConfig", "maxRetryDuration"), "duration"),
    "min-backoff": (("retryConfig", "minBackoff"), "duration"),
    "max-backoff": (("retryConfig", "maxBackoff"), "duration"),
    "max-doublings": (("retryConfig", "maxDoublings"), "integer"),
    "log-sampling-ratio": (("stackdriverLoggingConfig", "samplingRatio"), "number"),
    "state": (("state",), "state"),
}
FLAG_USAGE: Final = (
    "write --queue projects/P/locations/L/queues/Q[:KEY=VALUE,...] with KEY one of "
    + ", ".join(FLAG_SETTINGS)
)


class DeclarationError(ValueError):
    """A declaration that cannot be used; the message names where it came from."""


@dataclass(frozen=True)
class Declaration:
    """One declared queue: where it was written, the Queue protobuf (v2, or v2beta3
    when the document used v2beta3-only fields) and the state it names, if any."""

    source: str
    queue: Any
    beta: bool
    state: int | None

    @property
    def name(self) -> str:
        return str(self.queue.name)


def from_document(document: Any, source: str) -> Declaration:
    """A Queue document as ``gcloud tasks queues describe`` prints it."""
    if not isinstance(document, dict):
        raise DeclarationError(
            f"{source}: expected a queue (a mapping with name, rateLimits, ...), "
            f"got {type(document).__name__}"
        )
    fields = {k: value for k, value in document.items() if k not in _OUTPUT_ONLY}
    state_text = fields.pop("state", None)
    state = None
    if state_text is not None:
        state = _STATES.get(str(state_text).upper())
        if state is None:
            raise DeclarationError(
                f"{source}: state {state_text!r} cannot be declared; write RUNNING or PAUSED "
                "(the emulator never disables a queue)"
            )
    beta = bool(_V2BETA3_ONLY & set(fields))
    pb = (tasks_v2beta3 if beta else tasks_v2).Queue.pb()()
    try:
        check_json_document(fields, pb.DESCRIPTOR)
        json_format.ParseDict(fields, pb)
    except ApiError as exc:
        raise DeclarationError(f"{source}: {exc.message}") from None
    except json_format.ParseError as exc:
        raise DeclarationError(f"{source}: {' '.join(str(exc).split())}") from None
    if not pb.name:
        raise DeclarationError(
            f"{source}: the queue has no name; add name: projects/P/locations/L/queues/Q"
        )
    try:
        v.split_queue_name(pb.name)
    except ApiError as exc:
        raise DeclarationError(f"{source}: {exc.message}") from None
    return Declaration(source, pb, beta, state)


def _documents(path: Path) -> list[tuple[Any, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DeclarationError(f"--queues-file {path}: cannot read it ({exc})") from None
    if path.suffix.lower() == ".json":
        try:
            documents = [json.loads(text)]
        except ValueError as exc:
            raise DeclarationError(f"--queues-file {path}: not valid JSON ({exc})") from None
    else:
        import yaml  # only for YAML files: JSON-only users need no PyYAML

        try:
            documents = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}: " if mark is not None else ""
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise DeclarationError(
                f"--queues-file {path}: not valid YAML ({where}{problem})"
            ) from None
    found: list[tuple[Any, str]] = []
    for number, document in enumerate(documents, 1):
        where = f"{path} (document {number})" if len(documents) > 1 else str(path)
        if isinstance(document, list):
            found.extend((item, f"{where}, item {i}") for i, item in enumerate(document, 1))
        else:
            found.append((document, where))
    if not found:
        raise DeclarationError(f"--queues-file {path}: declares no queue")
    return found


def load_file(path: str | Path) -> list[Declaration]:
    return [from_document(doc, source) for doc, source in _documents(Path(path))]


def _setting(key: str, value: str, source: str) -> tuple[tuple[str, ...], Any]:
    known = FLAG_SETTINGS.get(key.strip().replace("_", "-"))
    if known is None:
        raise DeclarationError(f"{source}: unknown setting {key!r}; {FLAG_USAGE}")
    path, kind = known
    try:
        if kind == "number":
            return path, float(value)
        if kind == "integer":
            return path, int(value)
        if kind == "duration":
            return path, format_duration(parse_duration_s(value, what=key))
    except (ValueError, DurationError) as exc:
        raise DeclarationError(f"{source}: {key}={value!r} is not valid ({exc})") from None
    return path, value


def from_flag(text: str) -> Declaration:
    """``NAME[:KEY=VALUE,...]`` of one ``--queue`` flag."""
    source = f"--queue {text}"
    name, _, settings = text.partition(":")
    document: dict[str, Any] = {"name": name.strip()}
    for item in filter(None, (s.strip() for s in settings.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not value.strip():
            raise DeclarationError(f"{source}: {item!r} is not KEY=VALUE; {FLAG_USAGE}")
        path, parsed = _setting(key, value.strip(), source)
        node = document
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = parsed
    return from_document(document, source)


def check_unique(declarations: Iterable[Declaration]) -> None:
    seen: dict[str, str] = {}
    for d in declarations:
        if d.name in seen:
            raise DeclarationError(
                f"queue {d.name} is declared twice ({seen[d.name]} and {d.source}); keep one"
            )
        seen[d.name] = d.source


def _apply_one(emulator: Emulator, d: Declaration) -> str:
    parent, _ = v.split_queue_name(d.name)
    exists = d.name in emulator.queues
    if d.beta:
        beta = V2beta3Api(emulator)
        b3 = tasks_v2beta3
        if exists:
            beta.update_queue(b3.UpdateQueueRequest.pb()(queue=d.queue))
        else:
            beta.create_queue(b3.CreateQueueRequest.pb()(parent=parent, queue=d.queue))
    elif exists:
        emulator.update_queue(tasks_v2.UpdateQueueRequest.pb()(queue=d.queue))
    else:
        emulator.create_queue(tasks_v2.CreateQueueRequest.pb()(parent=parent, queue=d.queue))
    if d.state == _STATES["PAUSED"]:
        emulator.pause_queue(tasks_v2.PauseQueueRequest.pb()(name=d.name))
    elif d.state == _STATES["RUNNING"]:
        emulator.resume_queue(tasks_v2.ResumeQueueRequest.pb()(name=d.name))
    return "updated" if exists else "created"


def apply(emulator: Emulator, declarations: Iterable[Declaration]) -> dict[str, str]:
    """Create or update every declared queue; ``{name: "created" | "updated"}``.

    A declaration the core refuses (a rate above the limit, say) raises
    :class:`DeclarationError` with the core's message and the source."""
    done: dict[str, str] = {}
    for d in declarations:
        try:
            done[d.name] = _apply_one(emulator, d)
        except ApiError as exc:
            raise DeclarationError(f"{d.source}: {exc.message}") from None
    return done
