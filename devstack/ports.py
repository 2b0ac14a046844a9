"""A stack's local addresses: chosen once, remembered, the same after every restart.

Tasks carry the worker's URL (``http://127.0.0.1:PORT/tasks/TYPE``) and an
application outside the stack keeps one ``CLOUD_TASKS_EMULATOR_HOST``. If `up`
picked new ports each time, every task queued before a restart would be sent
to a port nobody serves and be dropped once its retries ran out. So the first
`up` of a stack lets each part take a free port (or takes the ones the user
asks for with ``--emulator-port``, ``--emulator-http-port``, ``--worker-port``)
and writes them to ``.devstack/<stack>/ports.json``; every later `up` uses the
same ones.
``down`` keeps the file; deleting it (or ``make clean``) forgets them.

A remembered or requested port that another program holds is an error that
names the port, the part and the fix, never a silent move to another port.

Deliberately not here: starting anything (`devstack.runtime`), or the state of
a running stack (`devstack.state`).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from devstack.state import StackPaths, StateError

ROLES = {
    "emulator_grpc": "--emulator-port",
    "emulator_http": "--emulator-http-port",
    "worker": "--worker-port",
}


@dataclass(frozen=True)
class StackPorts:
    """The three ports of a local stack on 127.0.0.1."""

    emulator_grpc: int
    emulator_http: int
    worker: int


@dataclass(frozen=True)
class RequestedPorts:
    """Ports the user asked for on the command line (None: remembered, else picked)."""

    emulator_grpc: int | None = None
    emulator_http: int | None = None
    worker: int | None = None


def ports_file(paths: StackPaths) -> Path:
    return paths.dir / "ports.json"


def valid_port(text: str) -> int:
    """A TCP port from the command line, 1..65535."""
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a port number (1..65535)") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{port} is not a port number (1..65535)")
    return port


def load_ports(paths: StackPaths) -> StackPorts | None:
    """The ports remembered for the stack, or None before its first `up`."""
    path = ports_file(paths)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        ports = StackPorts(**{f.name: valid_port(str(data[f.name])) for f in fields(StackPorts)})
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError(
            f"{path} is not a ports file ({exc}); delete it and `up` picks new ports"
        ) from None
    return ports


def save_ports(paths: StackPaths, ports: StackPorts) -> None:
    paths.ensure()
    path = ports_file(paths)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(ports), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def is_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port and it can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def planned_ports(paths: StackPaths, requested: RequestedPorts, host: str) -> RequestedPorts:
    """The ports this `up` must use: requested, else remembered; None where a part may
    take any free port (the stack's first `up`), which `up` then remembers.

    Raises StateError when two parts would share a port or a port is held by another
    program (the message says which flag moves that part).
    """
    remembered = load_ports(paths)
    chosen: dict[str, int] = {}
    for role in ROLES:
        wanted = getattr(requested, role)
        if wanted is None and remembered is not None:
            wanted = getattr(remembered, role)
        if wanted is not None:
            chosen[role] = wanted
    values = list(chosen.values())
    clashes = sorted({p for p in values if values.count(p) > 1})
    if clashes:
        raise StateError(
            f"two parts of stack {paths.stack!r} would share port "
            f"{', '.join(map(str, clashes))}: give each its own ({', '.join(ROLES.values())})"
        )
    for role, port in chosen.items():
        if not is_free(host, port):
            where = "asked for" if getattr(requested, role) is not None else "remembered"
            raise StateError(
                f"port {port} ({where} for the {role.replace('_', ' ')} of stack "
                f"{paths.stack!r}, {ports_file(paths)}) is in use by another program: stop "
                f"it, or move this part with `up {ROLES[role]} N`. Tasks queued locally keep "
                "the worker URL they were created with, so move the worker only when the "
                "queue is empty"
            )
    return RequestedPorts(**chosen)
