"""Bulk enqueue vs. the one-call-at-a-time loop of Google's published sample.

Enqueues N tasks (default 5,000) into the local emulator four ways, same
emulator process, same run, each into its own PAUSED queue so that dispatch to
a worker does not compete for the two CPUs (tasks are created, never delivered):

1. the sample loop, reproduced faithfully from python-docs-samples
   ``cloud_tasks/snippets/create_http_task.py``: a synchronous
   ``CloudTasksClient`` built inside the function (as the sample does, on every
   call), a dict task with POST, URL, ``Content-type`` header and JSON body, one
   ``create_task`` per task. The only change is the client's channel: an
   insecure one to the emulator (the sample's default client would go to Google).
   ``--skip-sample`` leaves it out (it is the slowest, ~15 s for 10,000 tasks).
2. the same loop with one client reused for all calls (a stronger baseline).
3. ``enqueue.AsyncEnqueuer`` + ``enqueue_many`` (gRPC asyncio, bounded
   concurrency), with everything the helper adds: validation, OIDC token,
   client-side names, retry policy.
4. the command line, ``python -m enqueue --outputs O bulk FILE.jsonl``, timed
   from process start to exit (imports, outputs, JSONL parsing, summary): what an
   operator waits for. Its CPU is the child process's (``getrusage``).

Run: ``.venv/bin/python benchmarks/enqueue_bench.py [--tasks N] [--concurrency C]
[--rounds R] [--rtt-ms MS] [--skip-sample]``. It prints tasks/s of each, the CPU
time of the client and of the emulator per method (also per task), and the
ratios. Issue 17 item 8 (the CLI's bulk path at least 5x the reused-client loop
for 10,000 tasks) is read from one run of

    .venv/bin/python benchmarks/enqueue_bench.py --tasks 10000 --skip-sample

whose "CLI bulk / reused-client loop" line puts both figures and the ratio side
by side (run it again with ``--tasks 3000`` for the short case).

On loopback the emulator's CPU (mostly its gRPC server, about 0.4 ms per
create) caps creation near 2,500 tasks/s on one core, and the sample loop pays no
TLS, no credential lookup and no network round trip: the comparison flatters the
sample. The last lines say what that cap allows: the least wall time any client
can take is the emulator's CPU for N creates (plus the CLI's start-up), so the
best ratio a client can reach here is the loop's wall time over that.
``--rtt-ms`` routes both loops and the bulk runs through a proxy process adding
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
import resource
import subprocess
import sys
import tempfile
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

from contract.names import EMULATOR_HOST_ENV
from emulator.testing import EmulatorProcess
from enqueue import AsyncEnqueuer, StackOutputs, TaskSpec, enqueue_many

ROOT = Path(__file__).resolve().parent.parent
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


def children_cpu_seconds() -> float:
    """User + system CPU of the child processes waited for so far (the CLI runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Phase:
    """Wall time, the client's CPU and the emulator's CPU, summed over rounds.

    The client is this process, or (``in_children``) the child processes it
    waits for during the phase: the emulator and the proxy are children too, but
    they are not waited for until the end, so they do not count.
    """

    def __init__(self, emulator_pid: int, *, in_children: bool = False) -> None:
        self.pid = emulator_pid
        self._client_cpu = children_cpu_seconds if in_children else time.process_time
        self.wall = self.client_cpu = self.emulator_cpu = 0.0

    def __enter__(self) -> Phase:
        self._t = (time.perf_counter(), self._client_cpu(), cpu_seconds(self.pid))
        return self

    def __exit__(self, *exc: object) -> None:
        wall, cpu, emu = self._t
        self.wall += time.perf_counter() - wall
        self.client_cpu += self._client_cpu() - cpu
        self.emulator_cpu += cpu_seconds(self.pid) - emu


def write_jsonl(path: Path, payloads: list[dict[str, int]]) -> Path:
    """The CLI's input: the same tasks as the other methods, one object a line."""
    with path.open("w", encoding="utf-8") as stream:
        for payload in payloads:
            stream.write(json.dumps({"type": "bench", "data": payload}) + "\n")
    return path


def run_cli(outputs_file: Path, tasks_file: Path, host: str, concurrency: int, expect: int) -> None:
    """``python -m enqueue ... bulk FILE`` as an operator runs it (output redirected)."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "enqueue", "--outputs", str(outputs_file)),
            *("bulk", str(tasks_file), "--concurrency", str(concurrency)),
        ],
        cwd=ROOT,
        env={**os.environ, EMULATOR_HOST_ENV: host},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.startswith(f"created {expect}, "):
        raise SystemExit(
            f"the CLI bulk run failed (exit {done.returncode}): {done.stdout}{done.stderr}"
        )


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
    parser.add_argument(
        "--skip-sample",
        action="store_true",
        help="leave out the sample loop as published (a client per call), the slowest",
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

    with (
        EmulatorProcess() as emu,
        contextlib.ExitStack() as stack,
        tempfile.TemporaryDirectory() as tmp,
    ):
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
        q_cli = make_queue(admin, "enqueue-cli")
        stack_outputs = {
            "project": PROJECT,
            "location": LOCATION,
            "queue": q_bulk,
            "service_url": URL.removesuffix("/tasks/bench"),
            "audience": "https://worker.bench.example",
            "invoker_email": "invoker@bench.iam.gserviceaccount.com",
            "emulator_host": host,
        }
        outputs = StackOutputs.from_mapping(stack_outputs)
        cli_outputs = Path(tmp, "outputs.json")
        cli_outputs.write_text(json.dumps({**stack_outputs, "queue": q_cli}))
        # Start-up alone (an empty file: imports, outputs, channel), which also warms
        # the file cache the first timed run would otherwise pay for.
        empty = write_jsonl(Path(tmp, "empty.jsonl"), [])
        startup = Phase(emu.pid, in_children=True)
        for _ in range(2):
            startup.wall = startup.client_cpu = startup.emulator_cpu = 0.0
            with startup:
                run_cli(cli_outputs, empty, host, args.concurrency, 0)
        short = q_sample.rsplit("/", 1)[1]
        reused_client = tasks_v2.CloudTasksClient(
            transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(host))
        )
        sample, reused, bulk_phase = Phase(emu.pid), Phase(emu.pid), Phase(emu.pid)
        cli = Phase(emu.pid, in_children=True)

        async def bulk(chunk: list[dict[str, int]]) -> None:
            async with AsyncEnqueuer(outputs, env={}) as enqueuer:
                # Specs are built (and validated) inside the timed phase, as the
                # sample builds its dicts inside its loop.
                specs = (TaskSpec(type="bench", data=payload) for payload in chunk)
                summary = await enqueue_many(enqueuer, specs, concurrency=args.concurrency)
            if summary.failed or summary.created != len(chunk):
                raise SystemExit(f"bulk run lost tasks: {summary}")

        for number, start in enumerate(range(0, n, per_round)):
            chunk = payloads[start : start + per_round]
            tasks_file = write_jsonl(Path(tmp, f"round-{number}.jsonl"), chunk)
            if not args.skip_sample:
                with sample:
                    for payload in chunk:
                        sample_create_http_task(host, PROJECT, short, LOCATION, URL, payload)
            with reused:
                reused_client_loop(reused_client, q_reused, chunk)
            with bulk_phase:
                asyncio.run(bulk(chunk))
            with cli:
                run_cli(cli_outputs, tasks_file, host, args.concurrency, len(chunk))

        queues = (
            (q_reused, q_bulk, q_cli) if args.skip_sample else (q_sample, q_reused, q_bulk, q_cli)
        )
        for queue in queues:
            got = count_tasks(admin, queue)
            if got != n:
                raise SystemExit(f"{queue} holds {got} tasks, expected {n}")

    report(
        n,
        args.concurrency,
        rounds,
        sample if not args.skip_sample else None,
        reused,
        bulk_phase,
        cli,
        startup,
    )
    return 0


def report(
    n: int,
    concurrency: int,
    rounds: int,
    sample: Phase | None,
    reused: Phase,
    bulk: Phase,
    cli: Phase,
    startup: Phase,
) -> None:
    rows = [
        ("sample loop (client per call, as published)", sample),
        ("sample loop, one reused client", reused),
        (f"enqueue_many (asyncio gRPC, concurrency {concurrency})", bulk),
        ("CLI bulk (python -m enqueue, process included)", cli),
    ]
    print(
        f"{'':48} {'tasks/s':>8} {'wall s':>7} {'client CPU s':>13} {'emulator CPU s':>15}"
        f" {'client us/task':>15} {'emulator us/task':>17}"
    )
    for label, phase in rows:
        if phase is None:
            continue
        print(
            f"{label:48} {n / phase.wall:8.0f} {phase.wall:7.2f} "
            f"{phase.client_cpu:13.2f} {phase.emulator_cpu:15.2f}"
            f" {1e6 * phase.client_cpu / n:15.0f} {1e6 * phase.emulator_cpu / n:17.0f}"
        )
    print(
        f"CLI start-up alone (an empty file): {startup.wall:.2f} s wall, "
        f"{startup.client_cpu:.2f} s CPU"
    )
    if sample is not None:
        print(
            f"ratio enqueue_many / sample loop (as published): {sample.wall / bulk.wall:5.1f}x"
            " (goal >= 4x)"
        )
    print(f"ratio enqueue_many / sample loop, reused client:  {reused.wall / bulk.wall:5.1f}x")
    print(
        f"CLI bulk / reused-client loop, {n} tasks: {cli.wall:.2f} s vs {reused.wall:.2f} s = "
        f"{reused.wall / cli.wall:.1f}x (goal >= 5x for 10,000 tasks)"
    )
    # No client finishes before the emulator has done its share of the work: its CPU
    # per create (measured in this run) times N, plus the CLI's start-up per process.
    # An estimate (the start-up is timed apart, and varies with the machine's load).
    floor = cli.emulator_cpu + rounds * startup.wall
    print(
        f"emulator-bound best CLI run: {cli.emulator_cpu:.2f} s of emulator CPU + "
        f"{rounds} x {startup.wall:.2f} s start-up = {floor:.2f} s, so about "
        f"{reused.wall / floor:.1f}x is what a client can reach on this machine"
    )
    cores = os.cpu_count() or 1
    busy = (cli.client_cpu + cli.emulator_cpu) / (cli.wall * cores)
    print(
        f"during the CLI run, client + emulator kept {busy:.0%} of the {cores} CPUs busy "
        "(other processes took the rest)"
    )
    print(f"all {n} tasks of each run counted in their queues with ListTasks")


if __name__ == "__main__":
    raise SystemExit(main())
