"""Helpers of the process tests: a real HTTP target to deliver to, and polling with a deadline.

The target is a threaded ``http.server`` on 127.0.0.1 that records every request
and answers according to its path: ``/status/CODE`` answers CODE (429 and 503
with ``Retry-After: 2``), ``/sleep/S`` sleeps S seconds before answering 200,
``/flaky/N`` answers 500 N times per task then 200, ``/big/N`` answers 200
with an N-byte body, anything else answers 200. It is shut down with a short
poll interval, so stopping it costs no more than 50 ms.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Delivery:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Target:
    base_url: str
    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    active: int = 0
    max_active: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def url(self, path: str = "/ok") -> str:
        return self.base_url + path

    def for_task(self, task_name: str) -> list[Delivery]:
        task_id = task_name.rsplit("/", 1)[1]
        with self.lock:
            return [d for d in self.deliveries if d.headers.get("X-CloudTasks-TaskName") == task_id]

    def wait_for(
        self, count: int, task_name: str | None = None, timeout: float = 10.0
    ) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                got = list(self.deliveries)
            if task_name is not None:
                got = self.for_task(task_name)
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.02)


def _handler(target: Target) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with target.lock:
                target.active += 1
                target.max_active = max(target.max_active, target.active)
                target.deliveries.append(
                    Delivery(self.command, self.path, dict(self.headers.items()), body, time.time())
                )
            try:
                status = 200
                parts = self.path.split("?", 1)[0].strip("/").split("/")
                if parts[0] == "status" and len(parts) > 1:
                    status = int(parts[1])
                elif parts[0] == "sleep" and len(parts) > 1:
                    time.sleep(float(parts[1]))
                elif parts[0] == "flaky" and len(parts) > 1:
                    key = self.headers.get("X-CloudTasks-TaskName", "")
                    with target.lock:
                        target.counts[key] = target.counts.get(key, 0) + 1
                        status = 500 if target.counts[key] <= int(parts[1]) else 200
                payload = b""
                if parts[0] == "big" and len(parts) > 1:
                    payload = b"z" * int(parts[1])
                self.send_response(status)
                if status in (429, 503):
                    self.send_header("Retry-After", "2")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
            finally:
                with target.lock:
                    target.active -= 1

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


class _TargetServer(http.server.ThreadingHTTPServer):
    # The default listen backlog of 5 drops connections when a queue's burst opens
    # a hundred at once; real workers (uvicorn, gunicorn) listen with 1024 or more.
    request_queue_size = 1024
    daemon_threads = True


@contextlib.contextmanager
def serve_target() -> Iterator[Target]:
    server = _TargetServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    t = Target(base_url=f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(t)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield t
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def eventually(check: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll ``check`` until it is true or ``timeout`` passed; its last answer."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return check()
        time.sleep(interval)
    return True
