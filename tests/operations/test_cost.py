"""The cost preview equals a hand calculation from the published prices, compares with a
base plan, and the capacity preview warns where it should."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest

from bootstrap.foundation import KEEP_RECENT_IMAGES
from components.config import OperationsConfig
from contract.resources import OPERATIONS_TYPE
from plan import pricing
from plan.capacity import capacity
from plan.cost import DEFAULT_VOLUME, KEEP_RECENT_IMAGES as PLAN_KEEP, Volume, estimate
from plan.cost_report import backlog_threshold, render_markdown
from plan.engine import evaluate_config
from plan.model import Plan
from plan.stack_config import REPO_ROOT, load_stack_config

PREFIX = "cloud-tasks-pipeline:"


def dev_with(**overrides: str) -> Plan:
    config = {**load_stack_config("dev")}
    config.update({PREFIX + key: value for key, value in overrides.items()})
    return evaluate_config("dev", config)


KNOWN = {
    "expected_tasks_per_day": "100000",
    "expected_handler_seconds": "0.45",  # billed as 0.5 s (rounded up to 100 ms)
    "expected_payload_bytes": "40000",  # two 32 KB chunks
    "cpu": "1",
    "memory": "512Mi",
    "min_instances": "1",
    "request_concurrency": "20",
    "log_sampling_ratio": "1",
}


def test_a_known_configuration_costs_what_the_published_prices_say() -> None:
    """By hand, with the prices as the pages print them (not plan.pricing's names)."""
    cost = estimate(dev_with(**KNOWN))
    items = {(i.product, i.item.split(" (")[0]): i for i in cost.items}
    month_s = 730 * 3600
    tasks = 100_000 * 730 / 24  # 3,041,666.67 tasks a month

    # Cloud Tasks: CreateTask + one delivery, each 2 chunks of 32 KB; 1M free, $0.40/M.
    operations = tasks * 2 * 2
    assert items["Cloud Tasks", "operations"].usd == pytest.approx(
        (operations - 1_000_000) * 0.40 / 1_000_000
    )
    # Cloud Run: L = 1.157 tasks/s x 0.5 s in flight; busy share 1 - e^-L (> L/20).
    in_flight = tasks / month_s * 0.5
    busy_s = (1 - math.exp(-in_flight)) * month_s
    assert items["Cloud Run", "vCPU-seconds"].quantity == pytest.approx(busy_s)
    assert items["Cloud Run", "vCPU-seconds"].usd == pytest.approx((busy_s - 180_000) * 0.000024)
    assert items["Cloud Run", "GiB-seconds"].usd == pytest.approx(
        max(0, busy_s * 0.5 - 360_000) * 0.0000025
    )
    assert items["Cloud Run", "requests"].usd == pytest.approx((tasks - 2_000_000) * 0.40 / 1e6)
    idle_s = month_s - busy_s  # one warm instance, idle when not serving
    assert items["Cloud Run", "min_instances idle"].usd == pytest.approx(
        idle_s * (1 * 0.0000025 + 0.5 * 0.0000025)
    )
    # Artifact Registry: 5 kept images of 0.25 GB (assumed), 0.5 GB free, $0.10/GB-month.
    assert items["Artifact Registry", "image storage"].usd == pytest.approx((1.25 - 0.5) * 0.10)
    # Logging: 3.5 KB a task (assumed) is under the free 50 GiB.
    assert items["Cloud Logging", "log ingestion"].usd == 0
    assert cost.total_usd == pytest.approx(sum(i.usd for i in cost.items))
    # 4.47 + 23.40 + 0.54 + 0.42 + 5.52 + 0.08 (a month is 730 h)
    assert round(cost.total_usd, 2) == 34.42


def test_the_prices_are_the_published_ones() -> None:
    assert (pricing.TASKS_FREE_OPERATIONS, pricing.TASKS_USD_PER_MILLION_OPERATIONS) == (
        1_000_000,
        0.40,
    )
    assert pricing.TASKS_CHUNK_BYTES == 32 * 1024
    assert (pricing.RUN_USD_PER_VCPU_SECOND, pricing.RUN_USD_PER_GIB_SECOND) == (
        0.000024,
        0.0000025,
    )
    assert pricing.RUN_USD_PER_MILLION_REQUESTS == 0.40
    assert (pricing.RUN_FREE_VCPU_SECONDS, pricing.RUN_FREE_GIB_SECONDS) == (180_000, 360_000)
    assert pricing.RUN_FREE_REQUESTS == 2_000_000
    assert (pricing.REGISTRY_FREE_GB, pricing.REGISTRY_USD_PER_GB_MONTH) == (0.5, 0.10)
    assert (pricing.LOGGING_FREE_GIB, pricing.LOGGING_USD_PER_GIB) == (50, 0.50)
    assert all(url.startswith("https://cloud.google.com/") for url in pricing.SOURCES.values())


def test_the_defaults_are_the_configs_and_bootstraps() -> None:
    defaults = OperationsConfig()
    assert (
        Volume(
            defaults.expected_tasks_per_day,
            defaults.expected_handler_seconds,
            defaults.expected_payload_bytes,
        )
        == DEFAULT_VOLUME
    )
    assert PLAN_KEEP == KEEP_RECENT_IMAGES


def test_more_cpu_costs_exactly_more_vcpu_seconds() -> None:
    one = {i.item.split(" (")[0]: i for i in estimate(dev_with(**KNOWN)).items}
    two = {i.item.split(" (")[0]: i for i in estimate(dev_with(**{**KNOWN, "cpu": "2"})).items}
    assert two["vCPU-seconds"].quantity == pytest.approx(2 * one["vCPU-seconds"].quantity)
    assert two["GiB-seconds"].usd == one["GiB-seconds"].usd


def test_a_base_without_a_declared_volume_is_priced_with_the_heads() -> None:
    head = dev_with(**KNOWN)
    operations = head.one(OPERATIONS_TYPE)
    base = dataclasses.replace(
        head,
        resources=tuple(
            r for r in head.resources if r is not operations and r.parent != operations.urn
        ),
    )
    assert estimate(base).volume == DEFAULT_VOLUME
    assert estimate(base, fallback=estimate(head).volume).total_usd == estimate(head).total_usd
    text = render_markdown(head, base)
    assert "change **+0.00**" in text


def test_the_comment_shows_a_change_against_the_base() -> None:
    base = dev_with(**KNOWN)
    head = dev_with(**{**KNOWN, "min_instances": "2"})
    text = render_markdown(head, base)
    delta = estimate(head).total_usd - estimate(base).total_usd
    assert delta > 0
    assert f"change **+{delta:,.2f}**" in text
    assert "| Cloud Run | min_instances idle (2 kept warm) |" in text


class TestCapacity:
    def test_littles_law_and_the_drain_time(self) -> None:
        plan = dev_with(expected_tasks_per_day="86400", expected_handler_seconds="2")
        [queue] = capacity(plan, estimate(plan).volume, backlog_threshold(plan))
        assert queue.arrival_per_s == pytest.approx(1.0)
        assert queue.in_flight == pytest.approx(2.0)  # L = 1/s x 2 s
        # dev: 5/s, 10 concurrent (10 / 2 s = 5/s), 2 instances x 20 (40 / 2 s = 20/s).
        assert queue.throughput_cap_per_s == pytest.approx(5.0)
        assert queue.backlog_tasks == 1000  # the queue-depth alert's threshold
        assert queue.drain_seconds(queue.backlog_tasks) == pytest.approx(200)
        # min_instances 0 while 2 tasks are always in flight: warm one instance.
        assert any("set min_instances to 1" in w for w in queue.warnings)

    def test_a_rate_the_queue_cannot_dispatch_is_flagged(self) -> None:
        plan = dev_with(expected_tasks_per_day="1000000", expected_handler_seconds="0.1")
        [queue] = capacity(plan, estimate(plan).volume, 1000)
        assert any("max_dispatches_per_second is 5" in w for w in queue.warnings)

    def test_a_quiet_stack_has_no_warning(self) -> None:
        plan = dev_with(expected_tasks_per_day="1000")
        [queue] = capacity(plan, estimate(plan).volume, 1000)
        assert queue.warnings == ()


def test_python_m_plan_cost_prints_cost_and_capacity() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "plan", "--stack", "prod", "--cost"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "#### Cost and capacity: prod" in done.stdout
    assert "| Cloud Tasks | operations" in done.stdout
    assert "in flight (Little's law)" in done.stdout


def test_python_m_plan_cost_refuses_a_file_that_is_not_a_plan(tmp_path: object) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "plan", "cost", "--plan", str(REPO_ROOT / "README.md")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot read a plan:")
    assert done.stderr.count("\n") == 1


def test_each_recorded_queue_gets_its_share() -> None:
    """The Operations component records each queue's share; capacity reads every one."""
    plan = dev_with(expected_tasks_per_day="86400")
    operations = plan.one(OPERATIONS_TYPE)
    [path] = [q.path for q in plan.queues()]
    inputs = {
        **operations.inputs,
        "queues": {
            "default": {"queue": path, "tasksPerDay": 43200},
            "bulk": {"queue": path, "tasksPerDay": 43200},
        },
    }
    two = dataclasses.replace(
        plan,
        resources=tuple(
            dataclasses.replace(r, inputs=inputs) if r is operations else r for r in plan.resources
        ),
    )
    queues = capacity(two, estimate(two).volume, 1000)
    assert [q.key for q in queues] == ["default", "bulk"]
    assert all(q.arrival_per_s == pytest.approx(0.5) for q in queues)
