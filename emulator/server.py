"""Run the emulator: gRPC and HTTP servers plus the dispatcher in one asyncio loop.

The process prints exactly one line to stdout when both ports are bound and the
stored queues are dispatching again (``cloud-tasks-emulator ready grpc=... http=...``)
and logs to stderr. SIGINT/SIGTERM stop accepting calls, cancel in-flight
attempts (they are retried after a restart when ``--data`` is used) and exit 0.
With ``--one-port`` both servers listen on loopback ports of their own behind
one public port (emulator/oneport.py), and the ready line names that port twice.
Queues declared with ``--queues-file``/``--queue`` (emulator/declarations.py) are
applied after the stored state loads and before the gRPC port accepts calls.
It deliberately binds loopback unless told otherwise: there is no auth, and a
non-loopback ``--host`` is warned about loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import uvicorn

from contract.limits import DEFAULT_QUEUE_TOMBSTONE_S
from emulator.appengine import AppEngineHosts
from emulator.clock import ManualClock
from emulator.core import Emulator
from emulator.declarations import Declaration, apply as apply_declarations
from emulator.grpc_api import generic_handler
from emulator.http_guard import is_loopback
from emulator.oneport import PortSharer
from emulator.rest_api import build_app
from emulator.store import Store

log = logging.getLogger("emulator")
READY_PREFIX = "cloud-tasks-emulator ready"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8123
    http_port: int = 8124
    data: str | None = None
    fsync: bool = False  # --fsync: synchronous=FULL, durable across power loss (store.py)
    tombstone_seconds: float = 3600.0
    queue_tombstone_seconds: float = float(DEFAULT_QUEUE_TOMBSTONE_S)
    allow_hosts: tuple[str, ...] = ()
    app_engine_hosts: AppEngineHosts = field(default_factory=AppEngineHosts)
    manual_clock: bool = False
    one_port: bool = False  # gRPC and HTTP both on `port` (emulator/oneport.py)
    queues: tuple[Declaration, ...] = ()  # --queues-file / --queue (emulator/declarations.py)
    functions_url: str | None = None  # firebase-admin tasks without a URL (firebase_api.py)
    inspector_actions: bool = False  # the inspector page may act (emulator/inspector.py)

    def allowed_hosts(self) -> tuple[str, ...]:
        """Host names the HTTP API answers to besides loopback (emulator/http_guard.py):
        ``--host`` itself (as in the ready line's URL) and the ``--allow-host`` names."""
        named = () if is_loopback(self.host) else (self.host,)
        return (*named, *self.allow_hosts)


_EXPOSED_WARNING = (
    "cloud-tasks-emulator: WARNING: --host %s is not loopback: anyone who can reach "
    "this address can create, run and delete tasks without authentication, and make "
    "the emulator sign ID tokens for any service account, which the local worker "
    "accepts. Use it only on a trusted network."
)


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: this process owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _bind_http(
    host: str, port: int, what: str = "HTTP", flag: str = "--http-port"
) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # Lets restart() rebind the same port while old connections sit in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        # A name that does not resolve or an address not on this machine is the host's fault.
        fix = (
            f"pass {flag} 0 to pick a free port"
            if exc.errno in (errno.EADDRINUSE, errno.EACCES)
            else "pass --host with an address of this machine (127.0.0.1 by default)"
        )
        raise SystemExit(
            f"cloud-tasks-emulator: cannot bind the {what} port {host}:{port}: "
            f"{exc.strerror or exc}; {fix}"
        ) from exc
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def _stop_http(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, timeout=5)


async def serve(settings: Settings) -> None:
    # Everything started is registered for cleanup at once, so a failure at any
    # step (a busy port, an unusable --data file) exits with its message alone:
    # no unclosed HTTP client session, no tasks left on a closed loop.
    async with contextlib.AsyncExitStack() as cleanup:
        # The HTTP port first: it is the one most often busy, and nothing is
        # running yet when it is.
        if not is_loopback(settings.host):
            log.warning(_EXPOSED_WARNING, settings.host)
        public: socket.socket | None = None
        grpc_bind = f"{_url_host(settings.host)}:{settings.port}"
        if settings.one_port:  # both servers on loopback behind the one public port
            public = _bind_http(settings.host, settings.port, "--one-port", "--port")
            cleanup.callback(public.close)
            sock = _bind_http("127.0.0.1", 0)
            grpc_bind = "127.0.0.1:0"
        else:
            sock = _bind_http(settings.host, settings.http_port)
            if settings.port:
                # grpc reports a busy port with its own C-core log line and no reason;
                # binding it once here first gives the one line the HTTP port gives.
                _bind_http(settings.host, settings.port, "gRPC", "--port").close()
        cleanup.callback(sock.close)
        store = Store(settings.data, fsync=settings.fsync) if settings.data else None
        emulator = Emulator(
            store=store,
            tombstone_seconds=settings.tombstone_seconds,
            queue_tombstone_seconds=settings.queue_tombstone_seconds,
            app_engine_hosts=settings.app_engine_hosts,
            clock=ManualClock() if settings.manual_clock else None,
        )
        cleanup.push_async_callback(emulator.close)  # closes the store too, started or not

        grpc_server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", 8 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ]
        )
        grpc_server.add_generic_rpc_handlers((generic_handler(emulator),))
        try:
            grpc_port = grpc_server.add_insecure_port(grpc_bind)
        except RuntimeError as exc:
            raise SystemExit(
                f"cloud-tasks-emulator: cannot bind the gRPC port {settings.host}:{settings.port}; "
                "pass --port 0 to pick a free port"
            ) from exc
        # Loading a million stored tasks creates millions of objects and no garbage:
        # the cyclic collector would run thousands of times meanwhile for nothing. What
        # start-up made lives as long as the process, so it is then exempted from every
        # later full collection (gc.freeze), which would otherwise walk it all each time.
        gc.disable()
        try:
            await emulator.start()
        finally:
            gc.freeze()
            gc.enable()
        for name, done in apply_declarations(emulator, settings.queues).items():
            log.info("declared queue %s %s", name, done)
        await grpc_server.start()
        cleanup.push_async_callback(grpc_server.stop, 1.0)

        http_port = sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(
                emulator,
                settings.allowed_hosts(),
                settings.functions_url,
                inspector_actions=settings.inspector_actions,
            ),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        http_server = _EmbeddedUvicorn(config)
        http_task = asyncio.create_task(http_server.serve(sockets=[sock]))
        cleanup.push_async_callback(_stop_http, http_server, http_task)
        while not http_server.started:
            if http_task.done():
                await http_task
                raise SystemExit("cloud-tasks-emulator: the HTTP server stopped during startup")
            await asyncio.sleep(0.01)

        if public is not None:
            sharer = PortSharer(grpc_port, http_port)
            await sharer.start(public)
            cleanup.push_async_callback(sharer.close)
            grpc_port = http_port = public.getsockname()[1]

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        host = _url_host(settings.host)
        sys.stdout.write(f"{READY_PREFIX} grpc={host}:{grpc_port} http=http://{host}:{http_port}\n")
        sys.stdout.flush()
        log.info("serving gRPC on %s:%d and HTTP on %s:%d", host, grpc_port, host, http_port)

        await stop.wait()
        log.info("shutting down")
        # HTTP starts draining now, alongside the gRPC grace period; the cleanup
        # above then waits for it, stops gRPC and closes the emulator, in that order.
        http_server.should_exit = True
