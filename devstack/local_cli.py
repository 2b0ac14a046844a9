"""`python -m devstack up | down | status`: the local stack's commands.

    up [--stack S] [--detach] [--smoke] [--plan-file FILE] [--root DIR]
       [--emulator-port P] [--emulator-http-port Q] [--worker-port W]
    down [--stack S] [--root DIR]
    status [--stack S] [--root DIR]

`up` stays in the foreground until Ctrl-C (or SIGTERM) and then stops what it
started, whether or not its output can still be written (a pipe's reader may be
gone); with `--detach` it returns once the stack is ready and `down` stops
it. `--smoke` runs scripts/smoke_test.py against the stack once it is ready
(`make local` does). `--plan-file` realises a plan JSON written by
`python -m plan --format json` instead of evaluating the program:
a testing option, for example to check that a wrong run.invoker binding fails
locally. The ports flags fix a part's port; without them a stack keeps the
ports of its first `up` (`devstack.ports`). `--root` (or $DEVSTACK_ROOT) moves
`.devstack/` elsewhere, so tests never touch a developer's running stack.

Deliberately not here: what the commands do (`devstack.runtime`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from rich.console import Console

from contract.names import (
    OUTPUT_AUDIENCE,
    OUTPUT_EMULATOR_HOST,
    OUTPUT_INVOKER_EMAIL,
    OUTPUT_QUEUE,
    OUTPUT_SERVICE_URL,
    SMOKE_TASK_TYPE,
)
from devstack import hints, runtime
from devstack.ports import ROLES, RequestedPorts, valid_port
from devstack.processes import ProcessError
from devstack.queue_status import queue_statuses
from devstack.realise import PlanNotRealisable
from devstack.state import StackPaths, StackState, StateError, load_state
from devstack.watch import SERVICE_DIR, SourceWatch, module_dirs

DEFAULT_STACK = "dev"
SMOKE_SCRIPT = runtime.REPO_ROOT / "scripts" / "smoke_test.py"


class _Console(Console):
    """A console whose lost reader never stops the program.

    `make local | tee log` and Ctrl-C kill `tee` too: every later write fails. Rich
    then exits (SystemExit(1)) by default; here the stream is pointed at /dev/null,
    the rest of the output is dropped, and the shutdown that follows goes on.
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.file.fileno())
            os.close(devnull)


console = _Console(highlight=False, soft_wrap=True)
err_console = _Console(stderr=True, highlight=False, soft_wrap=True)


def _emit(target: _Console, message: str, markup: bool) -> None:
    try:
        target.print(message, markup=markup)
    except OSError:  # EIO from a closed terminal: like a broken pipe
        target.on_broken_pipe()


def _out(message: str, *, markup: bool = False) -> None:
    _emit(console, message, markup)


def _err(message: str, *, markup: bool = True) -> None:
    _emit(err_console, message, markup)


def _say(message: str) -> None:
    _out(message)


def common_arguments() -> argparse.ArgumentParser:
    """The parent parser of every sub-command's --stack and --root."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stack", default=DEFAULT_STACK, help="stack name (default: dev)")
    common.add_argument(
        "--root",
        type=Path,
        default=None,
        help="directory holding <stack>/ state, data and logs (default: .devstack at the "
        "repository root, or $DEVSTACK_ROOT)",
    )
    return common


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add up, down and status to the `python -m devstack` parser; `common` is
    `common_arguments()`, the parent parser of --stack and --root."""
    p_up = commands.add_parser(
        "up",
        parents=[common],
        help="realise the stack's plan on this machine (emulator, queue, worker)",
    )
    p_up.add_argument(
        "--detach", action="store_true", help="return once ready; stop later with `down`"
    )
    p_up.add_argument(
        "--smoke",
        action="store_true",
        help="run scripts/smoke_test.py against the stack once it is ready (make local does)",
    )
    p_up.add_argument(
        "--plan-file",
        type=Path,
        default=None,
        help="realise this plan JSON (from `python -m plan --format json`) instead of "
        "evaluating the program: for testing a changed plan",
    )
    p_up.add_argument(
        "--reload",
        action="store_true",
        help="restart the worker when a file under service/ (or of a TASKS_EXTRA_MODULES "
        "module) changes; queued tasks stay queued (make local does)",
    )
    for role, flag in ROLES.items():
        p_up.add_argument(
            flag,
            dest=f"{role}_port",
            type=_port,
            default=None,
            metavar="PORT",
            help=f"port of the {role.replace('_', ' ')} on 127.0.0.1 (default: the stack's "
            "remembered one, else a free one, then remembered)",
        )
    p_up.set_defaults(func=cmd_up)

    p_down = commands.add_parser(
        "down", parents=[common], help="stop the processes `up` started, and only those"
    )
    p_down.set_defaults(func=cmd_down)

    p_status = commands.add_parser(
        "status",
        parents=[common],
        help="health of each part, queue depth, resources with no local effect",
    )
    p_status.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="also what every planned resource became locally",
    )
    p_status.set_defaults(func=cmd_status)


def _port(text: str) -> int:
    try:
        return valid_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Stop(Exception):
    """SIGTERM or SIGHUP arrived: stop like on Ctrl-C."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def cmd_up(args: argparse.Namespace) -> int:
    # `up` runs for hours with its output often piped (make, tests, CI): line
    # buffering makes each message appear when it happens.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    # The parts run in their own sessions (so Ctrl-C reaches only `up`, which
    # stops them in order): SIGTERM and a closed terminal (SIGHUP) must stop
    # them too, from the first process started on.
    handled = (signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, _on_sigterm) for sig in handled}
    try:
        return _up(args)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ignore_signals() -> None:
    # Shutting down: a second Ctrl-C or SIGTERM must not cut the shutdown short
    # and leave a part running.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def _up(args: argparse.Namespace) -> int:
    stack: str = args.stack
    try:
        ports = RequestedPorts(
            emulator_grpc=args.emulator_grpc_port,
            emulator_http=args.emulator_http_port,
            worker=args.worker_port,
        )
        running = runtime.up(stack, root=args.root, plan_file=args.plan_file, ports=ports, say=_say)
    except PlanNotRealisable as exc:
        _err(f"[bold red]devstack up:[/] {exc}", markup=True)
        return 2
    except (runtime.StackError, ProcessError, StateError) as exc:
        _err(f"[bold red]devstack up:[/] {exc}", markup=True)
        return 1
    except (KeyboardInterrupt, _Stop):
        _ignore_signals()
        _say("\ninterrupted while starting; stopping what had started")
        runtime.down(stack, root=args.root, say=_say)
        return 130
    _print_ready(running.state, running.paths)
    if args.detach and not args.smoke:
        _say(f"detached; stop it with: {hints.python()} -m devstack down --stack {stack}")
        return 0
    try:
        if args.smoke:
            code = _run_smoke(running.paths)
            if code != 0:
                _err(
                    f"[bold red]smoke test failed[/] (exit {code}); stopping the stack. "
                    f"Logs: {running.paths.emulator_log} and {running.paths.worker_log}",
                    markup=True,
                )
                _ignore_signals()
                runtime.stop_running(running, _say)
                return 1
            if args.detach:
                return 0
        _print_howto(running.state, running.paths)
        _out("[bold]up[/]: press Ctrl-C to stop the stack", markup=True)
        return _watch(running, reload=args.reload)
    except (KeyboardInterrupt, _Stop):
        _ignore_signals()
        _say("\nstopping the stack")
        runtime.stop_running(running, _say)
        return 0


def _watch(running: runtime.Running, *, reload: bool) -> int:
    """Stay up; stop everything when a part dies or `down` took the stack away. With
    reload, restart the worker alone when its source changes."""
    sources = None
    if reload and running.realisation is not None:
        extra = module_dirs(running.realisation.worker.env, runtime.REPO_ROOT)
        sources = SourceWatch([SERVICE_DIR, *extra])
        _out(f"reload: watching {', '.join(str(r) for r in sources.roots)}")
    worker_broken = False  # a reload that did not start: wait for the next change
    while True:
        time.sleep(0.5)
        if sources is not None and (changed := sources.changed()):
            worker_broken = not _reload(running, changed)
        for role, started in running.children.items():
            code = started.process.poll()
            if code is None or (role == "worker" and worker_broken):
                continue
            state = load_state(running.paths)
            if state is None or state.started_at != running.state.started_at or state.stopping:
                _say(f"stack {running.state.stack!r} was taken down by `devstack down`")
                _ignore_signals()
                runtime.stop_running(running, _say)
                return 0
            _err(
                f"[bold red]the {role} exited[/] (status {code}); see {started.record.log}. "
                f"Stopping the rest; `{hints.python()} -m devstack up --stack "
                f"{running.state.stack}` starts the stack again on the same data.",
                markup=True,
            )
            _ignore_signals()
            runtime.stop_running(running, _say)
            return 1


def _reload(running: runtime.Running, changed: list[Path]) -> bool:
    """Restart the worker on the new code; False when it does not start (the stack
    stays up, tasks wait in the queue, and the next change tries again)."""
    shown = ", ".join(str(p.name) for p in changed[:3]) + (" ..." if len(changed) > 3 else "")
    _out(f"reloading the worker ({shown} changed); queued tasks stay queued")
    try:
        runtime.restart_worker(running, _say)
    except ProcessError as exc:
        _err(f"[bold red]reload failed:[/] {exc}; fix the code and save again")
        return False
    _out(f"worker reloaded: {running.children['worker'].record.url}")
    return True


def _run_smoke(paths: StackPaths) -> int:
    argv = [sys.executable, str(SMOKE_SCRIPT), "--outputs", str(paths.outputs_file)]
    _say("running the smoke test: " + shlex.join(argv))
    return subprocess.run(argv, check=False, cwd=runtime.REPO_ROOT).returncode


def _print_ready(state: StackState, paths: StackPaths) -> None:
    _out(
        f"[bold green]stack {state.stack} is up[/] in {state.ready_seconds:.2f} s "
        f"(goal < 5 s; plan {state.plan_seconds:.2f} s of it, from {state.plan_source})",
        markup=True,
    )
    _print_grouped("realised locally", state.realised, by_detail=False)
    _print_no_local_effect(state)
    if state.substitutions:
        _out("[bold]local substitutions[/]", markup=True)
        for line in state.substitutions:
            _say(f"  - {line}")
    out = state.outputs
    _say(f"outputs: {paths.outputs_file}")
    _say(f"  service_url   {out.get(OUTPUT_SERVICE_URL)} (the local worker)")
    _say(f"  audience      {out.get(OUTPUT_AUDIENCE)} (as planned)")
    _say(f"  invoker_email {out.get(OUTPUT_INVOKER_EMAIL)}")
    _say(f"  queue         {out.get(OUTPUT_QUEUE)}")
    _say(f"  emulator      grpc {out.get(OUTPUT_EMULATOR_HOST)}, http {out.get('emulator_url')}")
    _say(f"  inspector     {out.get('emulator_url')}/inspector (queues and tasks, read-only)")


def _print_grouped(title: str, items: list[dict[str, str]], *, by_detail: bool) -> None:
    """One line per resource, or per reason with the resources it covers (shorter)."""
    _out(f"[bold]{title}[/] ({len(items)})", markup=True)
    if not by_detail:
        for item in items:
            _say(f"  - {item['name']} ({item['type']}): {item['detail']}")
        return
    groups: dict[str, list[str]] = {}
    for item in items:
        groups.setdefault(item["detail"], []).append(item["name"])
    for detail, names in groups.items():
        _say(f"  - {detail}: {', '.join(names)}")


def _print_no_local_effect(state: StackState) -> None:
    _print_grouped("no local effect", state.no_local_effect, by_detail=True)


def _print_howto(state: StackState, paths: StackPaths) -> None:
    out = state.outputs
    outputs_file = shlex.quote(str(paths.outputs_file))
    _out("\n[bold]enqueue from another terminal[/]", markup=True)
    _say(
        f"  {hints.python()} -m enqueue --outputs {outputs_file} send {SMOKE_TASK_TYPE} "
        """--data '{"hello": "world"}'"""
    )
    _say(
        f"  with the official client: insecure gRPC channel to {out.get(OUTPUT_EMULATOR_HOST)}, "
        f"parent {out.get(OUTPUT_QUEUE)}, url {out.get(OUTPUT_SERVICE_URL)}/tasks/TYPE, "
        f"oidc_token(service_account_email={out.get(OUTPUT_INVOKER_EMAIL)}, "
        f"audience={out.get(OUTPUT_AUDIENCE)}); example in docs/local.md"
    )
    _say(f"  status: {hints.python()} -m devstack status --stack {state.stack}")
    _say(f"logs: {paths.emulator_log}  {paths.worker_log}")


def cmd_down(args: argparse.Namespace) -> int:
    try:
        return runtime.down(args.stack, root=args.root, say=_say)
    except (runtime.StackError, StateError) as exc:
        _err(f"[bold red]devstack down:[/] {exc}", markup=True)
        return 1


def cmd_status(args: argparse.Namespace) -> int:
    try:
        paths, state = runtime.read_state(args.stack, args.root)
    except StateError as exc:
        _err(f"[bold red]devstack status:[/] {exc}", markup=True)
        return 1
    if state is None:
        _say(
            f"stack {args.stack!r} is not up (nothing recorded in {paths.dir}); "
            f"start it with: {hints.python()} -m devstack up --stack {args.stack}"
        )
        return 3
    _out(f"[bold]stack {state.stack}[/]", markup=True)
    healthy = True
    for record in state.processes:
        part = runtime.part_status(record)
        healthy = healthy and part.healthy
        running = "running" if part.running else "NOT RUNNING"
        health = ("healthy" if part.healthy else "UNHEALTHY") + f" ({part.detail})"
        _say(f"  {part.role:<8} pid {part.pid:<7} {running}, {health}  {part.url}")
        _say(f"  {'':<8} log {part.log}")
    queues = queue_statuses(state.outputs)
    _say(f"queues ({len(queues)}; rate = the queue's dispatch cap):")
    for queue in queues:
        _say(f"  {queue.line()}")
        healthy = healthy and queue.known
    if args.verbose:
        # What stands in for each planned resource, e.g. who may invoke the worker.
        _print_grouped("realised locally", state.realised, by_detail=False)
        _print_no_local_effect(state)
    else:
        for item in state.realised:
            if "may invoke" in item["detail"]:
                _say(f"invoker: {item['detail']}")
        _say(f"({len(state.realised) + len(state.no_local_effect)} planned resources: --verbose)")
    _say(
        f"ready in {state.ready_seconds:.2f} s (plan {state.plan_seconds:.2f} s); outputs: "
        f"{paths.outputs_file}"
    )
    return 0 if healthy else 1
