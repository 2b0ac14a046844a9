"""Header size and read-time limits, against a real `python -m service` process.

They live in the HTTP server below the app (`service.http_limits`), so only a
real socket shows them: one unauthenticated caller must not stall `/healthz`,
take hundreds of MB, or hold a connection open for ever.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.http_limits import MAX_HEADER_BYTES
from tests.service.support import WorkerProcess

pytestmark = pytest.mark.integration

TIMEOUT_S = 1.0  # header and body read timeouts of the worker under test


@pytest.fixture(scope="module")
def worker() -> Iterator[WorkerProcess]:
    env = {"TASKS_HEADER_TIMEOUT_S": str(TIMEOUT_S), "TASKS_BODY_TIMEOUT_S": str(TIMEOUT_S)}
    with WorkerProcess(env) as process:
        yield process


def _connect(worker: WorkerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", worker.port), timeout=10)


def _answer(sock: socket.socket) -> bytes:
    """Everything the worker writes until it closes the connection."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def _peak_rss_kib(worker: WorkerProcess) -> int:
    for line in Path(f"/proc/{worker.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _healthz_s(worker: WorkerProcess) -> float:
    started = time.perf_counter()
    assert httpx.get(worker.url + "/healthz", timeout=10).status_code == 200
    return time.perf_counter() - started


def test_a_64_mib_header_is_refused_at_once(worker: WorkerProcess) -> None:
    peak_before = _peak_rss_kib(worker)
    sock = _connect(worker)
    started = time.perf_counter()
    sent = 0
    with sock:
        sock.sendall(b"POST /tasks/smoke HTTP/1.1\r\nHost: w\r\nX-Big: ")
        try:
            while sent < 64 * 1024 * 1024:
                sock.sendall(b"a" * (1 << 20))
                sent += 1 << 20
        except OSError:
            pass  # the worker closed the connection: what this test wants
        answer = _answer(sock)
    elapsed = time.perf_counter() - started
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert sent < 16 * 1024 * 1024, "the worker read far past the limit"
    assert elapsed < 2.0
    assert _healthz_s(worker) < 0.5
    # Before the limit: ~130 MB more, and /healthz stalled for seconds.
    assert _peak_rss_kib(worker) - peak_before < 16 * 1024
    worker.wait_for_log(lambda e: "header section above" in e.get("message", ""))


def test_a_large_header_in_small_pieces_is_refused(worker: WorkerProcess) -> None:
    with _connect(worker) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: w\r\n")
        try:
            for _ in range(MAX_HEADER_BYTES // 1024 + 2):
                sock.sendall(b"X-Pad: " + b"p" * 1015 + b"\r\n")
        except OSError:
            pass
        assert _answer(sock).startswith(b"HTTP/1.1 431 ")


def test_a_header_section_under_the_limit_is_served(worker: WorkerProcess) -> None:
    pads = {f"X-Pad-{i}": "p" * 1000 for i in range(MAX_HEADER_BYTES // 1100)}
    response = httpx.get(worker.url + "/healthz", headers=pads, timeout=10)
    assert response.status_code == 200


@pytest.mark.parametrize("sent", [b"", b"POST /tasks/smoke HTTP/1.1\r\nHost: w\r\nX-Slow: 1"])
def test_a_header_that_never_completes_is_cut_off(worker: WorkerProcess, sent: bytes) -> None:
    with _connect(worker) as sock:
        started = time.perf_counter()
        sock.sendall(sent)
        answer = _answer(sock)
        elapsed = time.perf_counter() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert TIMEOUT_S * 0.9 <= elapsed < TIMEOUT_S + 2


def test_a_trickled_header_is_cut_off_on_the_first_deadline(worker: WorkerProcess) -> None:
    with _connect(worker) as sock:
        started = time.perf_counter()
        sock.sendall(b"POST /tasks/smoke HTTP/1.1\r\n")
        answer = b""
        try:
            for i in range(40):  # a byte each 0.1 s: the deadline does not move
                sock.sendall(b"X-%d: 1\r\n" % i)
                time.sleep(0.1)
        except OSError:
            pass
        answer = _answer(sock)
        elapsed = time.perf_counter() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert elapsed < TIMEOUT_S + 2


def test_a_body_that_never_completes_gets_408(worker: WorkerProcess) -> None:
    with _connect(worker) as sock:
        started = time.perf_counter()
        sock.sendall(
            b"POST /tasks/smoke HTTP/1.1\r\nHost: w\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        answer = _answer(sock)
        elapsed = time.perf_counter() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert b"connection: close" in answer.lower()
    assert elapsed < TIMEOUT_S + 2
    entry = worker.wait_for_log(lambda e: e.get("outcome") == "body_timeout")
    assert entry["severity"] == "WARNING"


def test_the_worker_still_serves_after_all_that(worker: WorkerProcess) -> None:
    response = httpx.post(worker.url + "/tasks/smoke", json={"nonce": "after"}, timeout=10)
    assert response.status_code == 200
