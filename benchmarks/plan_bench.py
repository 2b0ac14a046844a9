"""Offline plan: how long evaluating the Pulumi program under mocks takes per stack,
and what rendering and diffing cost. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/plan_bench.py [--repeat N]

Targets: a plan per stack well under 1 s (the local stack evaluates one before
starting anything, and the test suite evaluates every stack once per session).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plan.diff import diff_plans
from plan.engine import evaluate
from plan.render import render_mermaid, render_text
from plan.stack_config import available_stacks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()

    started = time.perf_counter()
    first = evaluate("dev")
    cold = time.perf_counter() - started
    print(
        f"first evaluation (imports pulumi_gcp, stack dev): {cold * 1000:.0f} ms, "
        f"{len(first.resources)} resources"
    )

    for stack in available_stacks():
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            plan = evaluate(stack)
            times.append(time.perf_counter() - t0)
        print(
            f"evaluate({stack!r}): median {statistics.median(times) * 1000:.0f} ms, "
            f"max {max(times) * 1000:.0f} ms over {args.repeat} runs, "
            f"{len(plan.resources)} resources"
        )

    plan = evaluate("prod")
    for name, render in (("text", render_text), ("mermaid", render_mermaid)):
        t0 = time.perf_counter()
        for _ in range(100):
            render(plan)
        print(f"render_{name}: {(time.perf_counter() - t0) * 10:.2f} ms per call")
    # Same stack on both sides, so every resource's inputs are flattened and compared
    # (plans of different stacks share no URN and would measure nothing).
    again = evaluate("prod")
    t0 = time.perf_counter()
    for _ in range(100):
        diff_plans(plan, again)
    print(
        f"diff_plans (prod vs prod, all compared): "
        f"{(time.perf_counter() - t0) * 10:.2f} ms per call"
    )
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {rss_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
