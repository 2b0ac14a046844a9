"""`python -m devstack logs | exec | reset | export | import`: daily tools around a stack.

    logs [--stack S] [--task ID] [--part worker|emulator|all] [-n N] [--follow]
    exec [--stack S] -- COMMAND [ARGS...]
    reset [--stack S]
    export [--stack S] FILE
    import [--stack S] FILE

`logs` shows the worker's JSON log lines as one readable, coloured line each
(`devstack.logs`), optionally only those of one task, and with `--follow`
keeps printing new ones until Ctrl-C. `exec` brings the stack up, runs a
command against it (an application's integration tests, say) with
`CLOUD_TASKS_EMULATOR_HOST` and `DEVSTACK_OUTPUTS` (the outputs file) set,
takes the stack down and exits with the command's status, like `firebase
emulators:exec`. `reset`, `export` and `import` manage the emulator's data
(`devstack.data`). Deliberately not here: bringing stacks up and down
(`devstack.runtime`), or the `up`/`down`/`status` commands (`devstack.local_cli`).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from rich.console import Console

from contract.names import EMULATOR_HOST_ENV, OUTPUT_EMULATOR_HOST
from devstack import hints, logs, runtime
from devstack.data import export_data, import_data, reset_data
from devstack.processes import ProcessError, is_ours
from devstack.realise import PlanNotRealisable
from devstack.state import StackPaths, StateError, load_state

OUTPUTS_ENV = "DEVSTACK_OUTPUTS"
FOLLOW_POLL_S = 0.25

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add logs, exec, reset, export and import; `common` is the parent parser of
    --stack and --root (`devstack.local_cli.common_arguments`)."""
    p_logs = commands.add_parser(
        "logs", parents=[common], help="the worker's and emulator's logs, readable"
    )
    p_logs.add_argument("--task", help="only the lines of this task (its id or full name)")
    p_logs.add_argument("--part", choices=("worker", "emulator", "all"), default="all")
    p_logs.add_argument("-n", type=int, default=50, help="last N lines first (default 50)")
    p_logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    p_logs.set_defaults(func=cmd_logs)

    p_exec = commands.add_parser(
        "exec",
        parents=[common],
        help="bring the stack up, run a command against it, take it down, exit with its status",
    )
    p_exec.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    p_exec.set_defaults(func=cmd_exec)

    p_reset = commands.add_parser(
        "reset", parents=[common], help="delete the stack's emulator data (queues, tasks)"
    )
    p_reset.set_defaults(func=cmd_reset)
    for name, verb in (("export", "write the stack's emulator data to"), ("import", "load")):
        p_data = commands.add_parser(
            name, parents=[common], help=f"{verb} FILE (a shareable starting state)"
        )
        p_data.add_argument("file", type=Path, metavar="FILE")
        p_data.set_defaults(func=cmd_export if name == "export" else cmd_import)


def _fail(command: str, message: str, code: int = 1) -> int:
    err_console.print(f"[bold red]devstack {command}:[/] {message}", markup=True)
    return code


# --- logs -----------------------------------------------------------------------------


def _log_files(paths: StackPaths, part: str) -> list[tuple[str, Path]]:
    files = [("emulator", paths.emulator_log), ("worker", paths.worker_log)]
    return [(role, path) for role, path in files if part in ("all", role)]


def _lines(role: str, path: Path, offset: int) -> tuple[list[logs.LogLine], int]:
    """The complete lines of path from offset on, and the offset after them."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1  # a line still being written waits for the next poll
    text = data[:end].decode("utf-8", errors="replace")
    return [logs.parse(role, raw) for raw in text.splitlines()], offset + end


def _shown(lines: list[logs.LogLine], task: str | None) -> Iterator[logs.LogLine]:
    return (line for line in lines if task is None or line.mentions(task))


def cmd_logs(args: argparse.Namespace) -> int:
    try:
        paths = StackPaths.for_stack(args.stack, args.root)
    except StateError as exc:
        return _fail("logs", str(exc))
    files = _log_files(paths, args.part)
    if not any(path.exists() for _, path in files):
        return _fail("logs", f"no logs in {paths.dir}: the stack {args.stack!r} never ran")
    offsets = {}
    backlog: list[logs.LogLine] = []
    for role, path in files:
        lines, offsets[role] = _lines(role, path, 0)
        backlog += list(_shown(lines, args.task))[-args.n :] if args.n > 0 else []
    for line in backlog:
        console.print(logs.render(line))
    if not args.follow:
        return 0
    try:
        while True:
            time.sleep(FOLLOW_POLL_S)
            for role, path in files:
                lines, offsets[role] = _lines(role, path, offsets[role])
                for line in _shown(lines, args.task):
                    console.print(logs.render(line))
    except KeyboardInterrupt:
        return 0


# --- exec -----------------------------------------------------------------------------


class _Stop(Exception):
    """SIGTERM or SIGHUP: stop the command and the stack like on Ctrl-C."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def cmd_exec(args: argparse.Namespace) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        return _fail("exec", "name the command to run: python -m devstack exec -- COMMAND", 2)
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    quiet = lambda _message: None  # noqa: E731 (the command's own output is what matters)
    try:
        try:
            running = runtime.up(args.stack, root=args.root, say=quiet)
        except PlanNotRealisable as exc:
            return _fail("exec", str(exc), 2)
        except (runtime.StackError, ProcessError, StateError) as exc:
            return _fail("exec", str(exc))
        outputs = running.paths.outputs_file
        env = dict(
            os.environ,
            **{EMULATOR_HOST_ENV: running.state.outputs[OUTPUT_EMULATOR_HOST]},
            **{OUTPUTS_ENV: str(outputs)},
        )
        err_console.print(f"devstack exec: stack {args.stack} is up ({outputs}); running {argv}")
        try:
            return subprocess.run(argv, env=env, check=False).returncode
        except FileNotFoundError:
            return _fail("exec", f"{argv[0]}: command not found", 127)
        except (KeyboardInterrupt, _Stop):
            return 130
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            runtime.stop_running(running, quiet)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- data -----------------------------------------------------------------------------


def _refuse_if_up(paths: StackPaths) -> str | None:
    state = load_state(paths)
    if state is not None and any(is_ours(p) for p in state.processes):
        return (
            f"stack {paths.stack!r} is up and its emulator holds the data: stop it first "
            f"({hints.python()} -m devstack down --stack {paths.stack})"
        )
    return None


def cmd_reset(args: argparse.Namespace) -> int:
    try:
        paths = StackPaths.for_stack(args.stack, args.root)
        if (refusal := _refuse_if_up(paths)) is not None:
            return _fail("reset", refusal)
        existed = reset_data(paths)
    except StateError as exc:
        return _fail("reset", str(exc))
    console.print(
        f"stack {args.stack}: emulator data deleted; the next `up` starts empty"
        if existed
        else f"stack {args.stack}: no emulator data to delete"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    try:
        paths = StackPaths.for_stack(args.stack, args.root)
        count = export_data(paths, args.file)
    except StateError as exc:
        return _fail("export", str(exc))
    console.print(f"stack {args.stack}: {count} task(s) and their queues written to {args.file}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    try:
        paths = StackPaths.for_stack(args.stack, args.root)
        if (refusal := _refuse_if_up(paths)) is not None:
            return _fail("import", refusal)
        count = import_data(paths, args.file)
    except StateError as exc:
        return _fail("import", str(exc))
    console.print(f"stack {args.stack}: {count} task(s) loaded from {args.file}; run `up`")
    return 0
