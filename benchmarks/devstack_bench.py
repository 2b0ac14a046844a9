"""Local stack timings: time to ready (goal < 5 s), smoke test, down.

    .venv/bin/python benchmarks/devstack_bench.py [--runs N] [--stack S]

Each run is what a user does, through the command line, in a fresh temporary
root: `devstack up --detach` (plan evaluation included), the smoke test
against its outputs, `devstack down`. Prints per-run figures and the median.
"ready" is measured inside `up` from its start to both parts healthy (plan
evaluation included); "up wall" adds the interpreter start and imports.

Deliberately not a pass/fail test: the figures depend on the machine's load.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devstack.state import StackPaths, load_state  # noqa: E402


def _timed(argv: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stack", default="dev")
    args = parser.parse_args()
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="devstack-bench-") as tmp:
        root = Path(tmp)
        paths = StackPaths.for_stack(args.stack, root)
        base = [sys.executable, "-m", "devstack"]
        where = ["--stack", args.stack, "--root", str(root)]
        for run in range(1, args.runs + 1):
            up_wall = _timed([*base, "up", "--detach", *where])
            state = load_state(paths)
            assert state is not None
            smoke = _timed(
                [sys.executable, "scripts/smoke_test.py", "--outputs", str(paths.outputs_file)]
            )
            down = _timed([*base, "down", *where])
            row = {
                "plan": state.plan_seconds,
                "ready": state.ready_seconds,
                "up wall": up_wall,
                "smoke": smoke,
                "down": down,
            }
            rows.append(row)
            print(f"run {run}: " + ", ".join(f"{k} {v:.2f} s" for k, v in row.items()))
    print(f"median of {len(rows)} runs (stack {args.stack}):")
    for key in rows[0]:
        values = [r[key] for r in rows]
        print(
            f"  {key:<8} {statistics.median(values):6.2f} s"
            f"  (min {min(values):.2f}, max {max(values):.2f})"
        )
    ready = statistics.median(r["ready"] for r in rows)
    print(f"time to ready goal < 5 s: {'met' if ready < 5 else 'NOT met'} ({ready:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
