"""Bulk enqueue vs. the one-call-at-a-time loop of Google's published sample.

Enqueues N tasks (default 5,000) into the local emulator three ways, same
emulator process, same run, each into its own PAUSED queue so that dispatch to
a worker does not compete for the two CPUs (tasks are created, never delivered):

1. the sample loop, reproduced faithfully from python-docs-samples
   ``cloud_tasks/snippets/create_http_task.py``: a synchronous
   ``CloudTasksClient`` built inside the function (as the sample does, on every
   call), a dict task with POST, URL, ``Content-type`` header and JSON body, one
   ``create_task`` per task. The only change is the client's channel: an
   insecure one to the emulator (the sample's default client would go to Google).
2. the same loop with one client reused for all calls (a stronger baseline).
3. ``enqueue.AsyncEnqueuer`` + ``enqueue_many`` (gRPC asyncio, bounded
   concurrency), with everything the helper adds: validation, OIDC token,
   client-side names, retry policy.

Run: ``.venv/bin/python benchmarks/enqueue_bench.py [--tasks N] [--concurrency C]
[--rounds R] [--rtt-ms MS]``. It prints tasks/s of each, the CPU time of the
client and of the emulator per method, and the ratios.

On loopback the emulator's CPU (mostly its gRPC server) caps creation near
2,000 tasks/s on one core, and the sample loop pays no TLS, no credential
lookup and no network round trip: the comparison flatters the sample.
``--rtt-ms`` routes both loops and the bulk run through a proxy process adding
that round-trip time, which is what a network to the real API adds; use it with
fewer tasks (``--tasks 500 --rtt-ms 20``), as the loops then take seconds per 100.

It deliberately measures creation only (no delivery) and uses the in-memory
emulator (no ``--data`` file).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import (
    CloudTasksGrpcTransport,
)

from emulator.testing import EmulatorProcess
from enqueue import AsyncEnqueuer, StackOutputs, TaskSpec, enqueue_many

PROJECT, LOCATION = "bench", "us-central1"
URL = "http://127.0.0.1:9/tasks/bench"  # nothing listens: the queues are paused anyway


def sample_create_http_task(
    host: str, project: str, queue: str, location: str, url: str, payload: Any
) -> Any:
    """create_http_task() of the sample, step for step (client per call included)."""
    client = tasks_v2.CloudTasksClient(
        transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(host))
    )
    parent = client.queue_path(project, location, queue)
    task: dict[str, Any] = {
        "http_request": {
            "http_method": tasks_v2.HttpMethod.POST,
            "url": url,
        }
    }
    if payload is not None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
            task["http_request"]["headers"] = {"Content-type": "application/json"}
        converted_payload = payload.encode()
        task["http_request"]["body"] = converted_payload
    response = client.create_task(request={"parent": parent, "task": task})
    client.transport.close()  # type: ignore[no-untyped-call]
    return response


def reused_client_loop(client: Any, parent: str, payloads: list[dict[str, int]]) -> None:
    for payload in payloads:
        task = {
            "http_request": {
                "http_method": tasks_v2.HttpMethod.POST,
                "url": URL,
                "headers": {"Content-type": "application/json"},
                "body": json.dumps(payload).encode(),
            }
        }
        client.create_task(request={"parent": parent, "task": task})


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (Linux /proc), to show who is the bottleneck."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Phase:
    """Wall time, this process's CPU and the emulator's CPU, summed over rounds."""

    def __init__(self, emulator_pid: int) -> None:
        self.pid = emulator_pid
        self.wall = self.client_cpu = self.emulator_cpu = 0.0

    def __enter__(self) -> Phase:
        self._t = (time.perf_counter(), time.process_time(), cpu_seconds(self.pid))
        return self

    def __exit__(self, *exc: object) -> None:
        wall, cpu, emu = self._t
        self.wall += time.perf_counter() - wall
        self.client_cpu += time.process_time() - cpu
        self.emulator_cpu += cpu_seconds(self.pid) - emu


async def serve_latency_proxy(upstream: str, rtt_ms: float) -> None:
    """A TCP proxy on 127.0.0.1 that delays every chunk by half the RTT each way.

    It models the network between a client and the real API (which the
    loopback emulator lacks), without limiting bandwidth: chunks are forwarded
    in order after a fixed delay, and reading never waits for writing. It prints
    its address, then serves until killed.
    """
    up_host, up_port = upstream.rsplit(":", 1)
    delay = rtt_ms / 2000.0
    loop = asyncio.get_running_loop()

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            loop.call_later(delay, writer.write, data)
        loop.call_later(delay, writer.close)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(up_host, int(up_port))
        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(f"127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


@contextlib.contextmanager
def latency_proxy(upstream: str, rtt_ms: float) -> Iterator[str]:
    """Run ``serve_latency_proxy`` in its own process (no GIL shared with the clients)."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-proxy", upstream, "--rtt-ms", str(rtt_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.kill()
        proc.wait()


def make_queue(client: Any, name: str) -> str:
    parent = f"projects/{PROJECT}/locations/{LOCATION}"
    queue = client.create_queue(parent=parent, queue=tasks_v2.Queue(name=f"{parent}/queues/{name}"))
    client.pause_queue(name=queue.name)
    return str(queue.name)


def count_tasks(client: Any, queue: str) -> int:
    request = tasks_v2.ListTasksRequest(parent=queue, page_size=1000)
    return sum(1 for _ in client.list_tasks(request=request))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="split the tasks into R interleaved rounds of the three methods, so that "
        "noise from other processes hits all three alike (default 1: one bulk of all tasks)",
    )
    parser.add_argument(
        "--rtt-ms",
        type=float,
        default=0.0,
        help="route the sample loop and the bulk run through a proxy adding this round-trip "
        "time, as a network to the real API would (default 0: plain loopback)",
    )
    parser.add_argument("--serve-proxy", metavar="UPSTREAM", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_proxy:
        asyncio.run(serve_latency_proxy(args.serve_proxy, args.rtt_ms))
        return 0
    n, rounds = args.tasks, args.rounds
    if rounds < 1 or n % rounds:
        raise SystemExit("--rounds must divide --tasks")
    per_round = n // rounds
    payloads = [{"i": i} for i in range(n)]

    with EmulatorProcess() as emu, contextlib.ExitStack() as stack:
        host = emu.grpc_host
        if args.rtt_ms > 0:
            host = stack.enter_context(latency_proxy(emu.grpc_host, args.rtt_ms))
            print(f"through a proxy adding {args.rtt_ms:g} ms round-trip time ({host})")
        admin = emu.client()
        print(
            f"emulator {emu.grpc_host}, {os.cpu_count()} CPUs, {n} tasks per method, queues PAUSED"
        )
        print("(creation only: nothing is dispatched, so dispatch does not compete for CPU)")
        load = os.getloadavg()[0]
        print(f"load average before the run: {load:.2f} (figures are noisy when it exceeds 1)")
        if rounds > 1:
            print(f"{rounds} interleaved rounds of {per_round} tasks per method")

        q_sample = make_queue(admin, "sample-loop")
        q_reused = make_queue(admin, "sample-loop-reused-client")
        q_bulk = make_queue(admin, "enqueue-bulk")
        outputs = StackOutputs.from_mapping(
            {
                "project": PROJECT,
                "location": LOCATION,
                "queue": q_bulk,
                "service_url": URL.removesuffix("/tasks/bench"),
                "audience": "https://worker.bench.example",
                "invoker_email": "invoker@bench.iam.gserviceaccount.com",
                "emulator_host": host,
            }
        )
        short = q_sample.rsplit("/", 1)[1]
        reused_client = tasks_v2.CloudTasksClient(
            transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(host))
        )
        sample, reused, bulk_phase = Phase(emu.pid), Phase(emu.pid), Phase(emu.pid)

        async def bulk(chunk: list[dict[str, int]]) -> None:
            async with AsyncEnqueuer(outputs, env={}) as enqueuer:
                # Specs are built (and validated) inside the timed phase, as the
                # sample builds its dicts inside its loop.
                specs = (TaskSpec(type="bench", data=payload) for payload in chunk)
                summary = await enqueue_many(enqueuer, specs, concurrency=args.concurrency)
            if summary.failed or summary.created != len(chunk):
                raise SystemExit(f"bulk run lost tasks: {summary}")

        for start in range(0, n, per_round):
            chunk = payloads[start : start + per_round]
            with sample:
                for payload in chunk:
                    sample_create_http_task(host, PROJECT, short, LOCATION, URL, payload)
            with reused:
                reused_client_loop(reused_client, q_reused, chunk)
            with bulk_phase:
                asyncio.run(bulk(chunk))

        for queue in (q_sample, q_reused, q_bulk):
            got = count_tasks(admin, queue)
            if got != n:
                raise SystemExit(f"{queue} holds {got} tasks, expected {n}")

    rows = (
        ("sample loop (client per call, as published)", sample),
        ("sample loop, one reused client", reused),
        (f"enqueue bulk (asyncio gRPC, concurrency {args.concurrency})", bulk_phase),
    )
    print(f"{'':46} {'tasks/s':>8} {'wall s':>7} {'client CPU s':>13} {'emulator CPU s':>15}")
    for label, phase in rows:
        print(
            f"{label:46} {n / phase.wall:8.0f} {phase.wall:7.2f} "
            f"{phase.client_cpu:13.2f} {phase.emulator_cpu:15.2f}"
        )
    print(
        f"ratio bulk / sample loop (as published): {sample.wall / bulk_phase.wall:5.1f}x"
        " (goal >= 4x)"
    )
    print(f"ratio bulk / sample loop, reused client:  {reused.wall / bulk_phase.wall:5.1f}x")
    print(f"all {n} tasks of each run counted in their queues with ListTasks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
