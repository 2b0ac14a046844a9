"""``--one-port`` against separate ports: what the relay in emulator/oneport.py costs.

Run: ``.venv/bin/python benchmarks/one_port_bench.py [--calls N] [--rounds R]``.
Two emulators run side by side (separate ports; ``--one-port``), each with one
official gRPC client creating tasks in a paused queue; batches alternate between
the two so machine noise hits both alike. Prints the median rate of each and
their ratio; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from emulator.testing import EmulatorProcess

PARENT = "projects/bench/locations/us-central1"
QUEUE = f"{PARENT}/queues/one-port"
TASK = {"http_request": {"url": "http://127.0.0.1:9/"}}


def _prepared(emu: EmulatorProcess) -> Any:
    client = emu.client()
    client.create_queue(parent=PARENT, queue={"name": QUEUE})
    client.pause_queue(name=QUEUE)
    for _ in range(200):  # warm-up: connections, caches
        client.create_task(parent=QUEUE, task=TASK)
    return client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=800, help="CreateTask calls per batch")
    parser.add_argument("--rounds", type=int, default=5, help="batches per emulator")
    args = parser.parse_args()
    with EmulatorProcess() as separate, EmulatorProcess(extra_args=("--one-port",)) as shared:
        clients = {"separate ports": _prepared(separate), "--one-port": _prepared(shared)}
        rates: dict[str, list[float]] = {label: [] for label in clients}
        for _ in range(args.rounds):
            for label, client in clients.items():
                start = time.perf_counter()
                for _ in range(args.calls):
                    client.create_task(parent=QUEUE, task=TASK)
                rates[label].append(args.calls / (time.perf_counter() - start))
    medians = {label: statistics.median(values) for label, values in rates.items()}
    for label, median in medians.items():
        print(f"{label:>15}: {median:7.0f} CreateTask/s (1 gRPC client, median of {args.rounds})")
    ratio = medians["--one-port"] / medians["separate ports"]
    print(f"{'ratio':>15}: {ratio:.2f}")


if __name__ == "__main__":
    main()
