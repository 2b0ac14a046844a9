"""`devstack watch`: the local stack's signals against the thresholds of the plan's alerts.

Pure tests read the alerts of every committed stack plan and measure them on
made-up samples; the integration test brings a stack up from a plan whose
thresholds are low (the program evaluated with `alert_queue_depth: 2` and
`alert_oldest_task_age: 5s`), makes a backlog on a paused queue, then a failing
handler (`enrich` without its backend answers 500) and a dead letter, and reads
`watch` as a script does (stdout not a terminal: one snapshot), then on a
pseudo-terminal, stopped with Ctrl-C.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from google.cloud import tasks_v2

from contract.gcp_metrics import LOG_BASED_METRIC_PREFIX, PUBLISHED_METRICS
from contract.resources import ALERT_POLICY_TYPE, config_key
from devstack.alert_thresholds import WORKER, PlannedAlert, planned_alerts
from devstack.live_signals import Sample, Window, WorkerLog, evaluate, parse_metrics
from devstack.runtime import tasks_client
from devstack.state import load_state
from plan.engine import evaluate_config
from plan.snapshots import load_snapshot
from plan.stack_config import load_stack_config
from tests.devstack.stack_helpers import REPO_ROOT, LocalStack, write_plan

STACKS = ("dev", "staging", "prod")
Q = "projects/p/locations/l/queues/q1"


@pytest.mark.parametrize("stack", STACKS)
def test_every_alert_of_the_plan_is_read_and_measured_locally(stack: str, tmp_path: Path) -> None:
    plan = load_snapshot(stack)
    alerts = planned_alerts(plan)
    assert len(alerts) == len(plan.of_type(ALERT_POLICY_TYPE))
    queues = plan.exports.queues
    assert {a.subject for a in alerts} == {*queues, WORKER}
    for alert in alerts:
        published = alert.metric_type in PUBLISHED_METRICS
        assert published or alert.metric_type.startswith(LOG_BASED_METRIC_PREFIX)
        assert PlannedAlert.from_json(json.loads(json.dumps(alert.to_json()))) == alert
    log = WorkerLog(tmp_path / "worker.log")
    zero = Sample.zero(0)
    readings = evaluate(alerts, queues, zero, zero, log)
    assert len(readings) == len(alerts)
    assert not [r for r in readings if r.detail == "not measured locally"]


def test_thresholds_are_the_plans_own() -> None:
    config = load_stack_config("dev")
    config[config_key("alert_queue_depth")] = "7"
    config[config_key("alert_failure_ratio")] = "0.25"
    alerts = {a.signal: a for a in planned_alerts(evaluate_config("dev", config))}
    assert alerts["queue-depth"].threshold == 7
    assert alerts["failure-ratio-5xx"].threshold == 0.25
    assert alerts["failure-ratio-5xx"].ratio
    assert "unavailable" in alerts["failure-ratio-5xx"].response_codes
    assert alerts["auth-drift"].response_codes == ("unauthenticated", "permission_denied")
    assert alerts["worker-5xx-ratio"].response_code_class == "5xx"
    assert alerts["queue-depth"].window_s == 300


_ATTEMPTS = "cloudtasks_queue_task_attempt_count_total"
_Q_LABELS = 'queue="%(q)s",queue_id="q1"'
METRICS = "\n".join(
    [
        "# TYPE cloudtasks_queue_depth gauge",
        f"cloudtasks_queue_depth{{{_Q_LABELS}}} %(depth)d",
        f"# TYPE {_ATTEMPTS} counter",
        f'{_ATTEMPTS}{{{_Q_LABELS},response_code="ok",response_code_class="2xx"}} %(ok)d',
        f'{_ATTEMPTS}{{{_Q_LABELS},response_code="internal",response_code_class="5xx"}} '
        "%(internal)d",
        f'{_ATTEMPTS}{{{_Q_LABELS},response_code="permission_denied",response_code_class="4xx"}} '
        "%(denied)d",
        "",
    ]
)


def _sample(at: float, **values: int) -> Sample:
    return Sample(at, parse_metrics(METRICS % {"q": Q, **values}))


def _alert(
    signal: str, metric: str, threshold: float, ratio: bool = False, codes: tuple[str, ...] = ()
) -> PlannedAlert:
    return PlannedAlert(
        subject="default",
        signal=signal,
        title=f"{signal} > {threshold}",
        metric_type=metric,
        threshold=threshold,
        duration_s=300,
        window_s=300,
        severity="WARNING",
        ratio=ratio,
        response_codes=codes,
    )


def test_values_are_measured_over_the_window_against_the_threshold(tmp_path: Path) -> None:
    attempts = "cloudtasks.googleapis.com/queue/task_attempt_count"
    depth = _alert("queue-depth", "cloudtasks.googleapis.com/queue/depth", 5)
    ratio = _alert("failure-ratio-5xx", attempts, 0.5, ratio=True, codes=("internal",))
    auth = _alert("auth-drift", attempts, 0, codes=("unauthenticated", "permission_denied"))
    base = _sample(0, depth=0, ok=10, internal=0, denied=1)
    log = WorkerLog(tmp_path / "worker.log")
    on_edge = _sample(60, depth=5, ok=12, internal=2, denied=1)
    alerts, queues = [depth, ratio, auth], {"default": Q}
    readings = {r.alert.signal: r for r in evaluate(alerts, queues, on_edge, base, log)}
    # At the threshold is not above it; the ratio counts only the window's attempts.
    assert (readings["queue-depth"].value, readings["queue-depth"].fires) == (5, False)
    assert (readings["failure-ratio-5xx"].value, readings["failure-ratio-5xx"].fires) == (
        0.5,
        False,
    )
    assert readings["failure-ratio-5xx"].detail == "2 of 4 attempts"
    assert (readings["auth-drift"].value, readings["auth-drift"].fires) == (0, False)
    above = _sample(90, depth=6, ok=12, internal=4, denied=2)
    readings = {r.alert.signal: r for r in evaluate(alerts, queues, above, base, log)}
    assert all(r.fires for r in readings.values())


def test_the_window_keeps_the_alerts_period(tmp_path: Path) -> None:
    window = Window(300, [Sample.zero(0)])
    assert window.add(_sample(10, depth=0, ok=1, internal=0, denied=0)).at == 0
    assert window.add(_sample(200, depth=0, ok=1, internal=0, denied=0)).at == 0
    assert window.add(_sample(400, depth=0, ok=1, internal=0, denied=0)).at == 10
    assert window.add(_sample(700, depth=0, ok=1, internal=0, denied=0)).at == 400


def test_the_worker_log_is_read_as_cloud_runs_metrics_count(tmp_path: Path) -> None:
    log_file = tmp_path / "worker.log"
    lines = [
        {"time": "2026-12-04T10:00:00+00:00", "status": 200, "latency_ms": 12.0},
        {"time": "2026-12-04T10:00:01+00:00", "status": 500, "latency_ms": 30.0},
        {"time": "2026-12-04T10:00:02+00:00", "dead_letter": {"queue_name": "q1", "reason": "x"}},
        {"time": "2026-12-04T10:00:03+00:00", "message": "no outcome"},
    ]
    log_file.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"time": "2026-12')
    log = WorkerLog(log_file)
    log.read(since=0)
    assert [(e.status, e.dead_letter_queue) for e in log.events] == [
        (200, None),
        (500, None),
        (None, "q1"),
    ]
    run = "run.googleapis.com/request_count"
    worker_5xx = PlannedAlert(
        WORKER, "worker-5xx-ratio", "5xx > 0.05", run, 0.05, 300, 300, "ERROR", True, (), "5xx"
    )
    dead = _alert("dead-letters", f"{LOG_BASED_METRIC_PREFIX}x/dead_letters", 0)
    zero = Sample.zero(0)
    ratio, letters = evaluate([worker_5xx, dead], {"default": Q}, zero, zero, log)
    assert (ratio.value, ratio.fires, letters.value, letters.fires) == (0.5, True, 1, True)


# --- a real stack ----------------------------------------------------------------------


def _watch(stack: LocalStack) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack", "watch", "--root", str(stack.root)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "COLUMNS"},
    )


def _row(output: str, signal: str) -> str:
    [row] = [line for line in output.splitlines() if line.startswith(f"  {signal}  ")]
    return row


def _until(stack: LocalStack, check: Any, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        done = _watch(stack)
        assert done.returncode == 0, done.stdout + done.stderr
        if check(done.stdout) or time.monotonic() > deadline:
            return done.stdout
        time.sleep(0.5)


@pytest.mark.integration
def test_a_backlog_and_a_failing_handler_make_the_alerts_fire(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    config = load_stack_config("dev")
    config[config_key("alert_queue_depth")] = "2"
    config[config_key("alert_oldest_task_age")] = "3s"
    plan_file = write_plan(tmp_path / "plan.json", evaluate_config("dev", config).to_json())
    local_stack.up("--plan-file", str(plan_file))
    state = load_state(local_stack.paths)
    assert state is not None
    assert state.alerts, "up recorded no alert thresholds"
    outputs = local_stack.outputs()
    client = tasks_client(outputs["emulator_host"])
    queue = outputs["queue"]

    quiet = _watch(local_stack).stdout
    assert "0 of 9 alerts would fire" in quiet, quiet
    assert "  FIRING" not in quiet

    # A backlog: the queue paused, three tasks waiting and ageing.
    client.pause_queue(name=queue)
    for n in range(3):
        client.create_task(parent=queue, task=_task(outputs, "smoke", {"n": n}))
    out = _until(local_stack, lambda o: "FIRING" in _row(o, "attempts running late (p99)"))
    assert "PAUSED  depth 3" in out
    assert _row(out, "tasks in the queue").split()[4:6] == ["3", "2"]
    assert "FIRING" in _row(out, "tasks in the queue")
    assert "FIRING" in _row(out, "attempts running late (p99)")
    assert "FIRING" not in _row(out, "attempts failing in the worker (5xx, timeouts)")

    # A failing handler (enrich has no backend locally: 500) and a dead letter (bad payload).
    client.resume_queue(name=queue)
    for _ in range(2):
        client.create_task(parent=queue, task=_task(outputs, "enrich", {"record_id": "r1"}))
    client.create_task(parent=queue, task=_task(outputs, "smoke", {"delay_s": 999}))
    out = _until(
        local_stack,
        lambda o: (
            "FIRING" in _row(o, "attempts failing in the worker (5xx, timeouts)")
            and "FIRING" in _row(o, "dead letters written")
        ),
    )
    assert "FIRING" in _row(out, "attempts failing in the worker (5xx, timeouts)")
    assert "FIRING" in _row(out, "worker answers 5xx")
    assert "FIRING" in _row(out, "dead letters written")
    assert "ok" in _row(out, "attempts refused 401/403").split()
    assert "RUNNING  depth" in out

    _ctrl_c_on_a_terminal(local_stack)


def _task(outputs: dict[str, Any], task_type: str, payload: dict[str, Any]) -> tasks_v2.Task:
    return tasks_v2.Task(
        {
            "http_request": {
                "url": f"{outputs['service_url']}/tasks/{task_type}",
                "http_method": "POST",
                "headers": {"Content-Type": "application/json"},
                "body": json.dumps(payload).encode(),
                "oidc_token": {
                    "service_account_email": outputs["invoker_email"],
                    "audience": outputs["audience"],
                },
            }
        }
    )


def _ctrl_c_on_a_terminal(stack: LocalStack) -> None:
    """On a terminal the view refreshes until Ctrl-C, then exits 0 without a traceback."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack", "watch", "--root", str(stack.root), "--interval", "0.2"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        cwd=REPO_ROOT,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 30
    while seen.count(b"alerts would fire") < 2 and time.monotonic() < deadline:
        seen += os.read(leader, 65536)
    assert seen.count(b"alerts would fire") >= 2, seen.decode(errors="replace")  # refreshed
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0
    try:
        while chunk := os.read(leader, 65536):
            seen += chunk
    except OSError:  # EIO once the process is gone
        pass
    os.close(leader)
    assert b"Traceback" not in seen


def test_a_truncated_worker_log_is_read_anew(tmp_path: Path) -> None:
    log_file = tmp_path / "worker.log"
    line = {"time": "2026-12-04T10:00:00+00:00", "status": 500, "latency_ms": 1.0}
    log_file.write_text(json.dumps(line) + "\n" + json.dumps(line) + "\n")
    log = WorkerLog(log_file)
    log.read(since=0)
    assert len(log.events) == 2
    log_file.write_text(json.dumps({**line, "status": 200}) + "\n")
    log.read(since=0)
    assert [e.status for e in log.events] == [500, 500, 200]


def test_a_narrow_terminal_keeps_the_values_the_thresholds_and_firing() -> None:
    from rich.console import Console

    from devstack.live_signals import Reading
    from devstack.signals_view import _alert_table

    alert = _alert(
        "failure-ratio-5xx",
        "cloudtasks.googleapis.com/queue/task_attempt_count",
        0.1,
        ratio=True,
        codes=("internal",),
    )
    reading = Reading(alert, 0.76, "16 of 21 attempts, a long note that may give way")
    for width in (60, 80, 100):
        console = Console(width=width, record=True, highlight=False)
        console.print(_alert_table([reading]))
        text = console.export_text()
        assert "76%" in text, (width, text)
        assert "10%" in text, (width, text)
        assert "FIRING" in text, (width, text)
