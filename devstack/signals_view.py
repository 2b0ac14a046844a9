"""`python -m devstack watch`: the local stack's signals, live, against its alerts.

    watch [--stack S] [--root DIR] [--interval SECONDS]

For every queue of the stack, its live values (state, depth, tasks in flight, the
oldest waiting task's age, attempts by response class, dropped tasks, dead
letters), then one row per alert policy the stack's plan declares for it, with
the value measured locally, the plan's threshold and, in red, FIRING where the
value is above it; then the worker's own alerts (5xx ratio, p99 latency). The
thresholds are those `up` recorded from the plan it realised
(`devstack.alert_thresholds`); the values come from the emulator's `/metrics` and
the worker's log (`devstack.live_signals`).

On a terminal it redraws every `--interval` seconds (rich's Live) until Ctrl-C;
when stdout is not a terminal it prints one snapshot and exits, so scripts and
tests read the same view (exit 1 when the emulator does not answer). Deliberately
not here: how values are measured (`devstack.live_signals`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from contract.names import OUTPUT_EMULATOR_URL
from contract.routing import output_queues
from devstack import hints, runtime
from devstack.alert_thresholds import WORKER, PlannedAlert
from devstack.live_signals import (
    QueueLive,
    Reading,
    Sample,
    Window,
    WorkerLog,
    evaluate,
    queue_live,
    scrape,
)
from devstack.state import StackPaths, StackState, StateError

DEFAULT_INTERVAL_S = 2.0
DEFAULT_WINDOW_S = 300.0  # when the plan records no alert (a stack `up` before watch existed)
SNAPSHOT_WIDTH = 120  # columns of a snapshot printed to a pipe or file (no terminal to fit)
# Rows in the order an operator reads them: the backlog, then failures, then losses.
_ORDER = (
    "queue-depth",
    "oldest-task-age",
    "failure-ratio-5xx",
    "failure-ratio-4xx",
    "auth-drift",
    "dropped-tasks",
    "dead-letters",
    "worker-5xx-ratio",
    "worker-latency",
)


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add `watch`; `common` is the parent parser of --stack and --root."""
    p_watch = commands.add_parser(
        "watch",
        parents=[common],
        help="each queue's live signals next to the stack's alert thresholds, refreshing",
    )
    p_watch.add_argument(
        "--interval",
        type=_interval,
        default=DEFAULT_INTERVAL_S,
        metavar="SECONDS",
        help=f"seconds between refreshes on a terminal (default {DEFAULT_INTERVAL_S:g})",
    )
    p_watch.set_defaults(func=cmd_watch)


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(
            f"--interval must be a number of seconds from 0.1 to 3600, got {text!r}"
        )
    return value


# --- formatting ----------------------------------------------------------------------------


def _seconds(value: float) -> str:
    if value == 0:
        return "0 s"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f} s" if value < 100 else f"{value:.0f} s"


def _value(alert: PlannedAlert, value: float) -> str:
    if alert.ratio:
        return f"{value:.0%}"
    if alert.metric_type.endswith(("_delays", "_latencies")):
        return _seconds(value / 1000.0)  # Monitoring's ms, read as seconds
    return f"{value:g}"


def _signal_name(alert: PlannedAlert) -> str:
    return alert.title.split(" > ", 1)[0] or alert.signal


def _state(reading: Reading) -> Text:
    if reading.value is None:
        return Text("-", style="dim")
    if reading.fires:
        return Text("FIRING", style="bold red")
    return Text("ok", style="green")


def _rank(reading: Reading) -> tuple[int, str]:
    signal = reading.alert.signal
    return (_ORDER.index(signal) if signal in _ORDER else len(_ORDER), signal)


def _alert_table(readings: list[Reading]) -> Table:
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="dim", pad_edge=False)
    # On a narrow terminal the alert's name and the note give way (ellipsis); the value,
    # the threshold and FIRING never do: they are what the view is for.
    table.add_column("  alert", no_wrap=True, overflow="ellipsis")
    table.add_column("live", justify="right", no_wrap=True, min_width=8)
    table.add_column("above", justify="right", no_wrap=True, min_width=8)
    table.add_column("", no_wrap=True, min_width=6)
    table.add_column("", style="dim", no_wrap=True, overflow="ellipsis", max_width=44)
    for reading in sorted(readings, key=_rank):
        alert = reading.alert
        value = "-" if reading.value is None else _value(alert, reading.value)
        note = reading.detail
        if reading.fires and alert.duration_s:
            note = f"{note}; " if note else ""
            note += f"cloud: if it holds {alert.duration_s:g} s"
        table.add_row(
            f"  {_signal_name(alert)}",
            Text(value, style="bold red" if reading.fires else ""),
            _value(alert, alert.threshold),
            _state(reading),
            note,
        )
    return table


def _queue_line(live: QueueLive) -> Text:
    line = Text()
    line.append(f"{live.key}", style="bold")
    line.append(" PAUSED" if live.paused else " RUNNING", style="yellow" if live.paused else "")
    attempts = " ".join(
        f"{cls} {live.attempts_by_class.get(cls, 0)}" for cls in ("2xx", "4xx", "5xx")
    )
    line.append(
        f"  depth {live.depth} · in flight {live.in_flight} · oldest "
        f"{_seconds(live.oldest_age_s)} · attempts {attempts} · dropped {live.dropped}"
        f" · dead letters {live.dead_letters}"
    )
    return line


# --- the view ------------------------------------------------------------------------------


@dataclass
class SignalsView:
    """Everything one frame needs, and the samples kept between frames."""

    state: StackState
    paths: StackPaths
    alerts: list[PlannedAlert]
    window: Window = field(init=False)
    log: WorkerLog = field(init=False)

    def __post_init__(self) -> None:
        seconds = max((a.window_s for a in self.alerts), default=0.0) or DEFAULT_WINDOW_S
        # Counters were zero when `up` started the emulator: the first baseline.
        self.window = Window(seconds, [Sample.zero(self.state.started_at)])
        self.log = WorkerLog(self.paths.worker_log)

    @property
    def emulator_url(self) -> str:
        return str(self.state.outputs.get(OUTPUT_EMULATOR_URL) or "")

    def frame(self) -> tuple[RenderableType, bool]:
        """The view now, and whether the emulator answered."""
        now = time.time()
        try:
            sample = scrape(self.emulator_url, now)
        except httpx.HTTPError as exc:
            message = f"the emulator at {self.emulator_url or '(no URL recorded)'} does not "
            message += f"answer /metrics ({exc}); is the stack up? "
            message += f"{hints.python()} -m devstack status --stack {self.state.stack}"
            return Text(message, style="bold red"), False
        base = self.window.add(sample)
        self.log.read(since=base.at)
        queues = output_queues(self.state.outputs)
        readings = evaluate(self.alerts, queues, sample, base, self.log)
        parts: list[RenderableType] = [self._header(now, base.at)]
        for key, path in queues.items():
            parts.append(_queue_line(queue_live(key, path, sample, base, self.log)))
            parts.append(_alert_table([r for r in readings if r.alert.subject == key]))
        worker = [r for r in readings if r.alert.subject == WORKER]
        if worker:
            answers = [e.status for e in self.log.events if e.status is not None]
            by_class = " ".join(
                f"{c}xx {sum(1 for s in answers if s // 100 == c)}" for c in (2, 4, 5)
            )
            parts.append(Text.assemble(("worker", "bold"), f"  answers {by_class}"))
            parts.append(_alert_table(worker))
        firing = sum(r.fires for r in readings)
        parts.append(self._footer(firing, len(readings)))
        return Group(*parts), True

    def _header(self, now: float, since: float) -> Text:
        clock = datetime.fromtimestamp(now).strftime("%H:%M:%S")
        if now - since >= self.window.seconds - 1:
            window = f"counts over the last {self.window.seconds:g} s (the alerts' window)"
        else:
            start = datetime.fromtimestamp(since).strftime("%H:%M:%S")
            window = f"counts since {start} ({now - since:.0f} s of the alerts' "
            window += f"{self.window.seconds:g} s window)"
        return Text.assemble(
            (f"stack {self.state.stack}", "bold"), f"  {clock}  {window}", style=""
        )

    def _footer(self, firing: int, total: int) -> Text:
        if not self.alerts:
            return Text(
                "no alert thresholds recorded for this stack (brought up before `watch` "
                f"existed): {hints.python()} -m devstack down --stack {self.state.stack}, "
                "then up again",
                style="yellow",
            )
        style = "bold red" if firing else "green"
        text = Text(f"{firing} of {total} alerts would fire", style=style)
        text.append(" (thresholds from the plan `up` realised; FIRING = above it now)", style="dim")
        return text


def cmd_watch(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=SNAPSHOT_WIDTH)
    try:
        paths, state = runtime.read_state(args.stack, args.root)
    except StateError as exc:
        Console(stderr=True).print(f"[bold red]devstack watch:[/] {exc}")
        return 1
    if state is None:
        console.print(
            f"stack {args.stack!r} is not up (nothing recorded in {paths.dir}); "
            f"start it with: {hints.python()} -m devstack up --stack {args.stack}",
            markup=False,
        )
        return 3
    view = SignalsView(state, paths, [PlannedAlert.from_json(a) for a in state.alerts])
    frame, answered = view.frame()
    if not console.is_terminal:
        console.print(frame)
        return 0 if answered else 1
    with (
        Live(frame, console=console, auto_refresh=False) as live,
        contextlib.suppress(KeyboardInterrupt),
    ):
        while True:
            time.sleep(args.interval)
            live.update(view.frame()[0], refresh=True)
    return 0
