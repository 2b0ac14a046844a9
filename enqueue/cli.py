"""``python -m enqueue``: enqueue one task (``send``) or a JSONL file (``bulk``).

Exit codes: 0 done (created, or already enqueued); 1 the API failed the task, or
some bulk tasks failed; 2 bad usage, bad input, or outputs/client that could not
be set up; 3 already enqueued with ``--fail-if-exists`` (``send``); 130
interrupted. Errors are one line on stderr, never a traceback.

This module deliberately holds no enqueue logic: it parses arguments, calls the
library and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

from contract.durations import DurationError, parse_duration_s
from contract.interpreter import python_command
from enqueue.defaults import DEFAULT_CONCURRENCY, MAX_CONCURRENCY, TRANSPORTS, RetryPolicy
from enqueue.errors import (
    AlreadyEnqueuedError,
    EnqueueError,
    EnqueueFailedError,
    LargeTaskWarning,
    OutputsError,
)
from enqueue.textfile import NotUtf8Error, read_utf8

# The Cloud Tasks client, gRPC and rich load only once a command runs: `--help` and a
# usage error stay fast for operators who script the command (benchmarks/enqueue_bench.py).
if TYPE_CHECKING:
    from rich.console import Console

    from enqueue.bulk import BulkSummary, FailureWriter
    from enqueue.defaults import Transport
    from enqueue.outputs import StackOutputs
    from enqueue.spec import TaskSpec

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ALREADY_ENQUEUED = 3
EXIT_INTERRUPTED = 130
SHOWN_FAILURES = 10
_DEFAULT_RETRY = RetryPolicy()


class UsageError(Exception):
    """Bad command-line input (exit 2)."""


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments are one line naming `--help`, no usage dump: the contract of the
    enqueue helper and `python -m ops` is "one clear line, no traceback"."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _seconds(text: str) -> float:
    # argparse prefixes the message with the flag's name.
    try:
        return parse_duration_s(text, what="")
    except DurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m enqueue",
        description="Enqueue tasks on the stack's Cloud Tasks queues (or the local emulator).",
        epilog="exit codes: 0 done (created or already enqueued); 1 the API failed a task or "
        "some bulk tasks failed; 2 bad usage/input/outputs, nothing sent; 3 already enqueued "
        "with --fail-if-exists; 130 interrupted. CLOUD_TASKS_EMULATOR_HOST=host:port selects "
        "an emulator. See enqueue/README.md.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", metavar="S", help="read outputs with `pulumi stack output`")
    source.add_argument("--outputs", metavar="FILE", help="read outputs from a JSON file")
    parser.add_argument(
        "--transport", choices=TRANSPORTS, default="grpc", help="API transport (default grpc)"
    )
    parser.add_argument(
        "--retry-deadline",
        type=_seconds,
        default=_DEFAULT_RETRY.deadline,
        metavar="S",
        help="give up retrying one task after S seconds (default %(default)s)",
    )
    parser.add_argument(
        "--max-attempts",
        type=positive_int,
        default=_DEFAULT_RETRY.max_attempts,
        metavar="N",
        help="attempts per task, transient errors only (default %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{send,bulk}")

    send = commands.add_parser("send", help="enqueue one task and print its name")
    send.add_argument("type", metavar="TYPE", help="task type: POST {service_url}/tasks/TYPE")
    payload = send.add_mutually_exclusive_group()
    payload.add_argument("--data", metavar="JSON", help="JSON payload (default {})")
    payload.add_argument("--data-file", metavar="FILE", help="read the JSON payload from FILE")
    identity = send.add_mutually_exclusive_group()
    identity.add_argument("--name", metavar="ID", help="literal task id ([A-Za-z0-9_-]{1,500})")
    identity.add_argument("--key", metavar="KEY", help="idempotency key, hashed into the id")
    when = send.add_mutually_exclusive_group()
    when.add_argument("--delay", type=_seconds, metavar="S", help="seconds before the first try")
    when.add_argument("--at", metavar="TIME", help="RFC 3339 time of the first try")
    send.add_argument(
        "--deadline", type=_seconds, metavar="S", help="dispatch deadline, 15..1800 s"
    )
    send.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="K:V",
        help="extra header for the worker request (repeatable)",
    )
    send.add_argument(
        "--queue",
        metavar="KEY",
        help="queue key (e.g. email) instead of the type's route in the outputs' routes",
    )
    send.add_argument(
        "--fail-if-exists", action="store_true", help="exit 3 if the name is already enqueued"
    )

    bulk = commands.add_parser("bulk", help="enqueue every task of a JSONL file")
    bulk.add_argument("file", metavar="FILE.jsonl", help='one task object a line; "-" for stdin')
    bulk.add_argument(
        "--concurrency",
        type=positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"creates in flight (1..{MAX_CONCURRENCY}, default %(default)s)",
    )
    bulk.add_argument(
        "--failures",
        metavar="FILE",
        help="where failed lines go (default FILE.failures.jsonl next to the input)",
    )
    bulk.add_argument(
        "--fail-if-exists", action="store_true", help="count already-enqueued tasks as failed"
    )
    bulk.add_argument(
        "--queue",
        metavar="KEY",
        help="queue key for every line that names none (default: each type's route)",
    )
    bulk.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _headers(values: Sequence[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header {value!r} must look like Name:value")
        headers[name.strip()] = content.strip()
    return headers


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{what} is not valid JSON ({exc.msg} at column {exc.colno}): quote it for the "
            """shell, e.g. --data '{"id": 42}'"""
        ) from None


def _spec_from_args(args: argparse.Namespace) -> TaskSpec:
    from enqueue.spec import TaskSpec

    data: Any = {}
    if args.data is not None:
        data = _json_arg(args.data, "--data")
    elif args.data_file is not None:
        try:
            text = read_utf8(Path(args.data_file))
        except NotUtf8Error as exc:
            raise UsageError(
                f"--data-file {args.data_file} {exc.detail}: the payload must be UTF-8 JSON; "
                "save the file as UTF-8"
            ) from None
        except OSError as exc:
            raise UsageError(f"cannot read --data-file {args.data_file}: {exc.strerror}") from None
        data = _json_arg(text, "--data-file")
    schedule_time = None
    if args.at is not None:
        try:
            schedule_time = datetime.fromisoformat(args.at)
        except ValueError:
            raise UsageError(
                f"--at {args.at!r} is not an RFC 3339 time like 2030-01-01T12:00:00Z"
            ) from None
    return TaskSpec(
        type=args.type,
        data=data,
        name=args.name,
        key=args.key,
        delay=args.delay,
        schedule_time=schedule_time,
        deadline=args.deadline,
        headers=_headers(args.header),
        queue=args.queue,
    )


def _load(args: argparse.Namespace, err: Console) -> StackOutputs:
    from enqueue.outputs import load_outputs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.stack is not None:
            outputs = load_outputs(stack=args.stack)
        else:
            outputs = load_outputs(args.outputs)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    return outputs


def _policy(args: argparse.Namespace) -> RetryPolicy:
    if args.retry_deadline <= 0:
        raise UsageError("--retry-deadline must be positive")
    return RetryPolicy(deadline=args.retry_deadline, max_attempts=args.max_attempts)


def _send(args: argparse.Namespace, out: IO[str], err: Console) -> int:
    from enqueue.enqueuer import Enqueuer

    spec = _spec_from_args(args)  # validate before any I/O on the outputs or the API
    outputs = _load(args, err)
    transport: Transport = args.transport
    with (
        Enqueuer(
            outputs,
            transport=transport,
            retry=_policy(args),
            already_exists_is_error=args.fail_if_exists,
        ) as enqueuer,
        warnings.catch_warnings(),
    ):
        # Printed below as one line each, rather than Python's two-line warning format.
        warnings.simplefilter("ignore", LargeTaskWarning)
        result = enqueuer.enqueue(spec)
    for message in result.warnings:
        print(f"warning: {message}", file=sys.stderr)
    if result.status == "already_enqueued":
        print(f"already enqueued: {result.name}", file=out)
    else:
        print(result.name, file=out)
    return EXIT_OK


def _count_lines(path: Path) -> int | None:
    try:
        with path.open("rb") as stream:
            return sum(1 for line in stream if line.strip())
    except OSError:
        return None


def _failures_path(args: argparse.Namespace) -> Path:
    if args.failures is not None:
        path = Path(args.failures)
    elif args.file == "-":
        path = Path("enqueue-failures.jsonl")
    else:
        source = Path(args.file)
        path = source.with_name(f"{source.stem}.failures.jsonl")
    if args.file != "-" and path.resolve() == Path(args.file).resolve():
        raise UsageError(f"--failures {path} is the input file: choose another path")
    return path


def _print_summary(
    summary: BulkSummary, writer: FailureWriter, args: argparse.Namespace, out: IO[str]
) -> None:
    rate = summary.total / summary.elapsed if summary.elapsed > 0 else 0.0
    print(
        f"created {summary.created}, already enqueued {summary.already_enqueued}, "
        f"failed {len(summary.failed)} (of {summary.total} in {summary.elapsed:.1f} s, "
        f"{rate:.0f} tasks/s)",
        file=out,
    )
    if summary.warnings:
        print(f"warnings: {summary.warnings} tasks over 100 KB (allowed up to 1 MiB)", file=out)
    for outcome in sorted(summary.failed, key=lambda o: o.item.line)[:SHOWN_FAILURES]:
        print(f"failed: line {outcome.item.line}: {outcome.reason}", file=out)
    if len(summary.failed) > SHOWN_FAILURES:
        print(f"... and {len(summary.failed) - SHOWN_FAILURES} more", file=out)
    if writer.count:
        source = f"--stack {args.stack}" if args.stack else f"--outputs {args.outputs}"
        queue = f" --queue {args.queue}" if args.queue else ""
        print(
            f"failures written to {writer.path}: fix them and feed the file back with "
            f"{python_command()} -m enqueue {source} bulk {writer.path}{queue}",
            file=out,
        )


async def _bulk_run(
    args: argparse.Namespace,
    outputs: StackOutputs,
    stream: IO[bytes],
    writer: FailureWriter,
    err: Console,
) -> BulkSummary:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from enqueue.bulk import TaskOutcome, enqueue_many, read_jsonl
    from enqueue.enqueuer import AsyncEnqueuer

    drawn = not args.no_progress and err.is_terminal
    # Only a drawn bar needs the total, and only it is updated (a lock per task):
    # a run whose output is redirected does neither.
    total = _count_lines(Path(args.file)) if drawn and args.file != "-" else None
    transport: Transport = args.transport
    progress = Progress(
        TextColumn("enqueue"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=err,
        disable=not drawn,
    )
    bar = progress.add_task("enqueue", total=total, failed=0)

    def on_outcome(outcome: TaskOutcome) -> None:
        if outcome.status == "failed":
            writer.write(outcome)
        if drawn:
            progress.update(bar, advance=1, failed=writer.count)

    with progress:
        async with AsyncEnqueuer(
            outputs,
            transport=transport,
            retry=_policy(args),
            already_exists_is_error=args.fail_if_exists,
            rest_threads=min(args.concurrency, 64),
        ) as enqueuer:
            return await enqueue_many(
                enqueuer,
                read_jsonl(stream),
                concurrency=args.concurrency,
                on_outcome=on_outcome,
                queue=args.queue,
            )


def _bulk(args: argparse.Namespace, out: IO[str], err: Console) -> int:
    from enqueue.bulk import FailureWriter

    if args.concurrency > MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be at most {MAX_CONCURRENCY}")
    writer = FailureWriter(_failures_path(args))  # refuse a clash before sending anything
    _policy(args)
    outputs = _load(args, err)
    if args.queue is not None:
        outputs.stack_queues.check_key(args.queue)  # an unknown key sends nothing
    if args.file == "-":
        stream: IO[bytes] = sys.stdin.buffer
    else:
        try:
            stream = Path(args.file).open("rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    try:
        try:
            # Opened now, so an unwritable path stops the run before anything is sent.
            writer.open()
        except OSError as exc:
            hint = "pass --failures with a writable path"
            raise UsageError(
                f"cannot write the failures file {writer.path}: {exc.strerror}: {hint}"
            ) from None
        try:
            with warnings.catch_warnings():
                # Large tasks are counted in the summary instead of one warning each.
                warnings.simplefilter("ignore", LargeTaskWarning)
                summary = asyncio.run(_bulk_run(args, outputs, stream, writer, err))
        finally:
            writer.close()
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    _print_summary(summary, writer, args, out)
    return EXIT_FAILED if summary.failed else EXIT_OK


def main(argv: Sequence[str] | None = None, *, out: IO[str] | None = None) -> int:
    """Run the CLI; returns the exit code (documented in the module docstring)."""
    out = out or sys.stdout

    def fail(message: str, code: int) -> int:
        print(f"error: {message}", file=sys.stderr)
        return code

    try:
        args = build_parser().parse_args(argv)
        from rich.console import Console  # only once a command runs (see the imports)

        err = Console(stderr=True)
        if args.command == "send":
            return _send(args, out, err)
        return _bulk(args, out, err)
    except UsageError as exc:
        return fail(str(exc), EXIT_USAGE)
    except AlreadyEnqueuedError as exc:
        return fail(str(exc), EXIT_ALREADY_ENQUEUED)
    except EnqueueFailedError as exc:
        return fail(str(exc), EXIT_FAILED)
    except (OutputsError, EnqueueError) as exc:
        return fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return fail(
            "interrupted: tasks in flight may or may not exist; named tasks can be re-sent safely",
            EXIT_INTERRUPTED,
        )
