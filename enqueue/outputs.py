"""Stack outputs: where the queue is, where tasks go, and whose token they carry.

``queues``, ``routes`` and ``dispatch_deadlines`` (``enqueue.queues``) say which queue
each task type goes to; outputs without them describe one ``default`` queue.

The outputs come from one of three places, all with the same keys
(``contract.names``): a mapping given by the program, a JSON file (the local
stack writes ``.devstack/<stack>/outputs.json``), or ``pulumi stack output
--json --stack S``. Missing keys are errors naming each key; unknown keys are
reported by name as a warning, because a typo in a required key already shows
up as that key missing, while extra outputs a newer stack exports are harmless.

This module deliberately does not cache outputs, look for a stack on its own or
run ``pulumi`` unless asked: the Pulumi CLI is often absent (CI, the local
stack) and an implicit lookup would fail in confusing ways there.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from contract.names import (
    LOCAL_OUTPUT_KEYS,
    MAP_STACK_OUTPUT_KEYS,
    OUTPUT_AUDIENCE,
    OUTPUT_DEAD_LETTER_BUCKET,
    OUTPUT_DISPATCH_DEADLINE,
    OUTPUT_EMULATOR_HOST,
    OUTPUT_EMULATOR_URL,
    OUTPUT_INVOKER_EMAIL,
    OUTPUT_LOCATION,
    OUTPUT_PROJECT,
    OUTPUT_QUEUE,
    OUTPUT_SERVICE_URL,
    OUTPUT_STORAGE_EMULATOR_HOST,
    STACK_OUTPUT_KEYS,
)
from enqueue.errors import OutputsError
from enqueue.queues import (
    QueueTarget,
    StackQueues,
    check_queue_path,
    deadline_seconds,
)
from enqueue.textfile import NotUtf8Error, read_utf8

# Every output this helper reads; the queue maps and the dead-letter outputs (read by
# `python -m ops`) may or may not be listed in contract.names' key tuples, so they are
# added here once.
DEAD_LETTER_OUTPUT_KEYS = (OUTPUT_DEAD_LETTER_BUCKET, OUTPUT_STORAGE_EMULATOR_HOST)
KNOWN_OUTPUT_KEYS = tuple(
    dict.fromkeys((*LOCAL_OUTPUT_KEYS, *MAP_STACK_OUTPUT_KEYS, *DEAD_LETTER_OUTPUT_KEYS))
)
_HOST_PORT = re.compile(r"(?P<host>[^\s/:]+|\[[0-9A-Fa-f:]+\]):(?P<port>[0-9]{1,5})")
# DNS names and IPv4 addresses; IPv6 literals are checked with ipaddress.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _valid_host(host: str) -> bool:
    if _HOST_NAME.fullmatch(host):
        return True
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


class UnknownOutputsWarning(UserWarning):
    """The outputs carry keys this helper does not know (named in the message)."""


def _check_http_url(key: str, value: str, source: str) -> None:
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. a bracketed host that is not an IPv6 address
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise OutputsError(
            f"{source}: output {key} must be an http(s) URL like https://worker-abc-uc.a.run.app, "
            f"got {value!r}: fix the value the stack exports"
        )
    if any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in value):
        raise OutputsError(
            f"{source}: output {key} must not contain spaces or control characters, "
            f"got {value!r}: fix the value the stack exports"
        )
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise OutputsError(
            f"{source}: output {key} has an invalid port (1..65535), got {value!r}: "
            "fix the value the stack exports"
        )
    if not _valid_host(parts.hostname or ""):
        raise OutputsError(
            f"{source}: output {key} has no valid host name, got {value!r}: "
            "fix the value the stack exports"
        )
    if parts.query or parts.fragment:
        raise OutputsError(
            f"{source}: output {key} must not carry a query or fragment, got {value!r}: "
            "export the bare service URL"
        )


@dataclass(frozen=True, slots=True)
class StackOutputs:
    """The stack outputs the helper needs, validated.

    Attributes mirror the output names of ``contract.names``; ``emulator_host``
    and ``emulator_url`` are only present in the local stack's outputs file.
    """

    project: str
    location: str
    queue: str
    service_url: str
    audience: str
    invoker_email: str
    dispatch_deadline_s: int | None = None
    """The stack's `dispatch_deadline` output, in seconds: the default queue's task deadline."""
    emulator_host: str | None = None
    emulator_url: str | None = None
    queues: StackQueues | None = field(default=None, hash=False)
    """Every queue, the routes and per-queue deadlines (`queues`, `routes`,
    `dispatch_deadlines`); outputs without them describe the one `default` queue."""
    dead_letter_bucket: str | None = None
    """The bucket dead letters are written to (`dead_letter_bucket`), when the stack has one."""
    storage_emulator_host: str | None = None
    """The local Cloud Storage emulator's URL (the value for `STORAGE_EMULATOR_HOST`)."""

    @property
    def stack_queues(self) -> StackQueues:
        """The stack's queues; one `default` queue (= `queue`) for outputs without the maps."""
        if self.queues is not None:
            return self.queues
        return StackQueues.single(self.queue, self.dispatch_deadline_s)

    def target(self, task_type: str, queue: str | None = None) -> QueueTarget:
        """The queue a task of ``task_type`` goes to: ``queue`` (a key) if given, else its route.

        Raises:
            TaskValidationError: ``queue`` is not a key of this stack.
        """
        return self.stack_queues.target(task_type, queue)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "outputs") -> StackOutputs:
        """Validate ``data`` (stack output name -> value) and build the outputs.

        Raises:
            OutputsError: naming every missing key, or the key whose value is wrong.
        """
        if not isinstance(data, Mapping):
            raise OutputsError(
                f"{source}: expected a JSON object of stack outputs, got {type(data).__name__}"
            )
        missing = [key for key in STACK_OUTPUT_KEYS if key not in data]
        if missing:
            raise OutputsError(
                f"{source}: missing output(s) {', '.join(missing)}: the stack must export "
                f"all of {', '.join(STACK_OUTPUT_KEYS)} (is it deployed and current?)"
            )
        unknown = sorted(str(key) for key in data if key not in KNOWN_OUTPUT_KEYS)
        if unknown:
            warnings.warn(
                UnknownOutputsWarning(
                    f"{source}: ignoring unknown output(s) {', '.join(unknown)} "
                    f"(known: {', '.join(KNOWN_OUTPUT_KEYS)})"
                ),
                stacklevel=2,
            )
        values: dict[str, str | None] = {}
        for key in (*LOCAL_OUTPUT_KEYS, *DEAD_LETTER_OUTPUT_KEYS):
            if key in MAP_STACK_OUTPUT_KEYS:
                continue  # JSON objects, validated with the queue below
            value = data.get(key)
            if value is None and key not in STACK_OUTPUT_KEYS:
                values[key] = None
                continue
            if not isinstance(value, str) or not value.strip():
                raise OutputsError(
                    f"{source}: output {key} must be a non-empty string, got {value!r}"
                )
            values[key] = value.strip()
        return cls._validated(values, data, source)

    @classmethod
    def _validated(
        cls, v: Mapping[str, str | None], data: Mapping[str, Any], source: str
    ) -> StackOutputs:
        def req(key: str) -> str:
            value = v[key]
            assert value is not None  # guaranteed by from_mapping for stack keys
            return value

        queue = req(OUTPUT_QUEUE)
        project, location = req(OUTPUT_PROJECT), req(OUTPUT_LOCATION)
        check_queue_path(OUTPUT_QUEUE, queue, project=project, location=location, source=source)
        _check_http_url(OUTPUT_SERVICE_URL, req(OUTPUT_SERVICE_URL), source)
        email = req(OUTPUT_INVOKER_EMAIL)
        if _EMAIL.fullmatch(email) is None:
            raise OutputsError(
                f"{source}: output {OUTPUT_INVOKER_EMAIL} must be a service account email, "
                f"got {email!r}"
            )
        deadline_text = v.get(OUTPUT_DISPATCH_DEADLINE)
        dispatch_deadline_s = (
            None
            if deadline_text is None
            else deadline_seconds(OUTPUT_DISPATCH_DEADLINE, deadline_text, source)
        )
        queues = None
        if any(data.get(key) is not None for key in MAP_STACK_OUTPUT_KEYS):
            queues = StackQueues.from_outputs(
                data,
                queue=queue,
                project=project,
                location=location,
                deadline_s=dispatch_deadline_s,
                source=source,
            )
        emulator_host = v.get(OUTPUT_EMULATOR_HOST)
        if emulator_host is not None and _HOST_PORT.fullmatch(emulator_host) is None:
            raise OutputsError(
                f"{source}: output {OUTPUT_EMULATOR_HOST} must be HOST:PORT, got {emulator_host!r}"
            )
        emulator_url = v.get(OUTPUT_EMULATOR_URL)
        if emulator_url is not None:
            _check_http_url(OUTPUT_EMULATOR_URL, emulator_url, source)
        storage_emulator_host = v.get(OUTPUT_STORAGE_EMULATOR_HOST)
        if storage_emulator_host is not None:
            _check_http_url(OUTPUT_STORAGE_EMULATOR_HOST, storage_emulator_host, source)
        return cls(
            project=project,
            location=location,
            queue=queue,
            service_url=req(OUTPUT_SERVICE_URL),
            audience=req(OUTPUT_AUDIENCE),
            invoker_email=email,
            dispatch_deadline_s=dispatch_deadline_s,
            emulator_host=emulator_host,
            emulator_url=emulator_url,
            queues=queues,
            dead_letter_bucket=v.get(OUTPUT_DEAD_LETTER_BUCKET),
            storage_emulator_host=storage_emulator_host,
        )

    @classmethod
    def from_file(cls, path: str | Path) -> StackOutputs:
        """Read the outputs from a JSON file (``pulumi stack output --json`` format)."""
        path = Path(path)
        try:
            text = read_utf8(path)
        except NotUtf8Error as exc:
            raise OutputsError(
                f"outputs file {path} {exc.detail}: it must be UTF-8 JSON; write it again as "
                "UTF-8, e.g. in PowerShell `pulumi stack output --json | "
                f"Out-File -Encoding utf8 {path}`"
            ) from None
        except FileNotFoundError:
            raise OutputsError(
                f"outputs file {path} does not exist: bring the local stack up "
                "(python -m devstack up) or write it with `pulumi stack output --json > FILE`"
            ) from None
        except OSError as exc:
            raise OutputsError(f"cannot read outputs file {path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise OutputsError(
                f"outputs file {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                f"{exc.msg})"
            ) from None
        return cls.from_mapping(data, source=str(path))

    @classmethod
    def from_stack(
        cls, stack: str, *, cwd: str | Path | None = None, pulumi: str = "pulumi"
    ) -> StackOutputs:
        """Run ``pulumi stack output --json --stack STACK`` (in ``cwd``) and read its outputs."""
        if not stack or stack.startswith("-"):
            raise OutputsError(f"invalid stack name {stack!r}: pass a stack such as dev")
        command = [pulumi, "stack", "output", "--json", "--stack", stack]
        try:
            done = subprocess.run(
                command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
            )
        except FileNotFoundError:
            raise OutputsError(
                f"the Pulumi CLI ({pulumi}) is not on PATH, so --stack {stack} cannot be read: "
                "install it (https://www.pulumi.com/docs/install/) or pass the outputs as a "
                "file with --outputs FILE (the local stack writes .devstack/<stack>/outputs.json)"
            ) from None
        except subprocess.TimeoutExpired:
            raise OutputsError(
                f"`{' '.join(command)}` did not answer within 120 s: check `pulumi whoami` "
                "and the backend, or pass --outputs FILE"
            ) from None
        if done.returncode != 0:
            detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
            raise OutputsError(
                f"`{' '.join(command)}` failed (exit {done.returncode}): "
                f"{detail[-1] if detail else 'no message'}"
            )
        try:
            data = json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise OutputsError(
                f"`{' '.join(command)}` printed something that is not JSON ({exc.msg})"
            ) from None
        return cls.from_mapping(data, source=f"stack {stack}")

    def task_path(self, task_id: str, queue_path: str | None = None) -> str:
        """Full name of the task ``task_id`` in ``queue_path`` (default: the `queue` output)."""
        return f"{queue_path or self.queue}/tasks/{task_id}"


def load_outputs(
    outputs: StackOutputs | Mapping[str, Any] | str | Path | None = None,
    *,
    stack: str | None = None,
    cwd: str | Path | None = None,
) -> StackOutputs:
    """Load outputs from exactly one source: an object, a mapping, a file path or a stack."""
    if (outputs is None) == (stack is None):
        raise OutputsError(
            "give exactly one source of stack outputs: a mapping or file (--outputs FILE) "
            "or a stack name (--stack S)"
        )
    if stack is not None:
        return StackOutputs.from_stack(stack, cwd=cwd)
    if isinstance(outputs, StackOutputs):
        return outputs
    if isinstance(outputs, str | Path):
        return StackOutputs.from_file(outputs)
    assert outputs is not None
    return StackOutputs.from_mapping(outputs)
