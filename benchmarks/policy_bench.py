"""Policy timings: the rules over every stack's plan, and the pack as Pulumi runs it.

    .venv/bin/python benchmarks/policy_bench.py [--runs N]

Prints, for each stack snapshot (tests/snapshots/plan-<stack>.json): the time
to run every rule over the plan in-process (what `python -m policy.check` and
the tests do); then, for the pack served from policy/.venv (needs
`make policy-venv`), the time from start to serving, the round trip of one
Analyze call per resource and of one AnalyzeStack call (what the engine adds
to a `pulumi preview` of the prod stack). Goals: the rules take under 1 ms
per plan; the pack adds under 2 s to a preview (mostly the interpreter and
grpc start-up).

Deliberately not a pass/fail test: the figures depend on the machine's load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contract.resources import config_key  # noqa: E402
from plan.model import Plan  # noqa: E402
from policy.check import stack_dispatch_deadline  # noqa: E402
from policy.rules import check_plan  # noqa: E402
from policy.served import served_pack  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()

    plans = {
        stack: Plan.loads((REPO / "tests" / "snapshots" / f"plan-{stack}.json").read_text())
        for stack in ("dev", "staging", "prod")
    }
    print(f"rules in-process, median of {args.runs} runs")
    for stack, plan in plans.items():
        deadline = stack_dispatch_deadline(stack, REPO)
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            violations = check_plan(plan, stack, deadline)
            times.append(time.perf_counter() - start)
        print(
            f"  {stack:8} {len(plan.resources):3} resources  "
            f"{statistics.median(times) * 1e6:8.1f} us  violations={len(violations)}"
        )

    prod = plans["prod"].to_json()
    start = time.perf_counter()
    with served_pack("prod", {config_key("dispatch_deadline"): "900s"}) as pack:
        ready = time.perf_counter() - start
        per_resource = []
        for _ in range(5):
            for resource in prod["resources"]:
                t0 = time.perf_counter()
                pack.analyze(resource)
                per_resource.append(time.perf_counter() - t0)
        stack_calls = []
        for _ in range(20):
            t0 = time.perf_counter()
            pack.analyze_stack(prod["resources"])
            stack_calls.append(time.perf_counter() - t0)
    analyze_ms = statistics.median(per_resource) * 1e3
    print("pack served from policy/.venv (pulumi_policy over gRPC), stack prod")
    print(f"  start to serving      {ready * 1e3:8.1f} ms")
    print(f"  Analyze, per resource {analyze_ms:8.2f} ms median ({len(per_resource)} calls)")
    print(f"  AnalyzeStack          {statistics.median(stack_calls) * 1e3:8.2f} ms median")
    total = ready + analyze_ms / 1e3 * len(prod["resources"]) + statistics.median(stack_calls)
    print(f"  added to one preview  {total * 1e3:8.1f} ms ({len(prod['resources'])} resources)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
