"""Emulator at scale: one queue holding a million pending tasks in a ``--data`` file.

Run: ``.venv/bin/python benchmarks/emulator_scale_bench.py [--tasks N]`` (default
1,000,000). Prints figures, asserts nothing:

* the emulator's resident memory (RSS) once it has loaded the file;
* restart time: from starting ``python -m emulator --data FILE`` to its ready line
  (everything loaded and dispatching), median of ``--restarts`` runs;
* ListTasks page time (1,000 tasks, the maximum page): the first page, and a deep
  page (the page after the median task name);
* the dispatch rate at a 500/s cap while the queue holds N tasks (one attempt must
  not cost O(N)), to a minimal local HTTP target.

The N rows are NOT created through N CreateTask calls (at ~1,500/s that alone
would take 11 minutes): a first emulator run creates the queue and one task over
gRPC, and the bench then copies that task's stored row N times straight into the
SQLite file, in one transaction, with its own names (the bulk path). The emulator
only ever reads them back, exactly as it would rows it wrote itself.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.emulator_bench import FastTarget, grpc_client
from emulator import paging
from emulator.state import TaskPb
from emulator.testing import EmulatorProcess

PARENT = "projects/bench/locations/us-central1"
QUEUE = f"{PARENT}/queues/scale"


def fill(data: Path, count: int, url: str) -> float:
    """``count`` pending tasks in QUEUE (paused, 500/s cap); returns seconds spent writing."""
    with EmulatorProcess(data) as emu:
        client = grpc_client(emu.grpc_host)
        client.create_queue(
            parent=PARENT,
            queue={"name": QUEUE, "rate_limits": {"max_dispatches_per_second": 500}},
        )
        client.pause_queue(name=QUEUE)
        client.create_task(parent=QUEUE, task={"http_request": {"url": url, "body": b'{"n": 1}'}})
    start = time.perf_counter()
    db = sqlite3.connect(data, isolation_level=None)
    ((template,),) = db.execute("SELECT data FROM tasks").fetchall()
    pb = TaskPb.FromString(template)

    def rows() -> Any:
        for name in task_names(count):
            pb.name = name
            yield (name, QUEUE, pb.SerializeToString(), 0)

    db.execute("BEGIN")
    db.execute("DELETE FROM tasks")
    db.executemany("INSERT INTO tasks (name, queue, data, named) VALUES (?, ?, ?, ?)", rows())
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return time.perf_counter() - start


def task_names(count: int) -> list[str]:
    """Distinct names in no particular order, like the emulator's random 63-bit ids
    (an odd multiplier is a bijection modulo 2**63)."""
    return [f"{QUEUE}/tasks/{i * 0x9E3779B97F4A7C15 % 2**63}" for i in range(count)]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(call: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000, help="pending tasks")
    parser.add_argument("--restarts", type=int, default=3, help="timed restarts")
    args = parser.parse_args()
    target = FastTarget()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "scale.db"
        written = fill(data, args.tasks, target.url)
        print(f"{args.tasks:,} pending tasks written to the file in {written:.1f} s (bulk path)")
        print(f"data file: {data.stat().st_size / 2**20:.0f} MiB")
        restarts: list[float] = []
        emu = EmulatorProcess(data, startup_timeout=120)
        for _ in range(args.restarts):
            seconds, _ = timed(emu.start)
            restarts.append(seconds)
            if len(restarts) < args.restarts:
                emu.stop(timeout=60)
        try:
            client = grpc_client(emu.grpc_host)
            rss = rss_mib(emu.pid)
            first, page = timed(lambda: client.list_tasks(request={"parent": QUEUE}).tasks)
            middle = sorted(task_names(args.tasks))[args.tasks // 2]
            token = paging.page_token(middle)
            deep, _ = timed(
                lambda: client.list_tasks(request={"parent": QUEUE, "page_token": token}).tasks
            )
            first_again, _ = timed(lambda: client.list_tasks(request={"parent": QUEUE}).tasks)
            seen = len(target.times)
            client.resume_queue(name=QUEUE)
            time.sleep(4.0)  # the burst, and connections opening
            begin, begin_at = len(target.times), time.time()
            time.sleep(5.0)
            rate = (len(target.times) - begin) / (time.time() - begin_at)
            client.pause_queue(name=QUEUE)
            print(f"delivered while measuring: {len(target.times) - seen} (of {len(page)} listed)")
        finally:
            emu.stop(timeout=60)
    print("restarts (s): " + ", ".join(f"{r:.2f}" for r in restarts))
    print(f"{'figure':<56}{'value':>14}")
    for label, value in (
        ("resident memory after loading (MiB)", rss),
        ("restart to ready line, median (s)", statistics.median(restarts)),
        ("restart to ready line, max (s)", max(restarts)),
        ("ListTasks first page of 1,000 (ms)", first * 1000),
        ("ListTasks first page again (ms)", first_again * 1000),
        ("ListTasks deep page (after the median name) (ms)", deep * 1000),
        ("dispatch/s at a 500/s cap with the queue this full", rate),
    ):
        print(f"{label:<56}{value:>14.1f}")


if __name__ == "__main__":
    main()
