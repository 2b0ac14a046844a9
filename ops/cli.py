"""``python -m ops``: operate a stack's queues, tasks and dead letters.

    tasks list [--queue KEY] [--limit N] [--json]     tasks waiting, bodies decoded
    tasks show NAME                                   one task (id or full name)
    tasks cancel NAME | --type T --key K              delete a task
    queue pause|resume KEY, queue purge KEY [--yes]
    dead-letters list [--queue KEY] [--type T] [--json], dead-letters show ID
    dead-letters replay (ID... | --queue KEY | --type T | --all) [--dry-run]

The same commands work against a deployed stack (``--stack S``) and the local one
(``--outputs .devstack/<stack>/outputs.json``), with the same output. Exit codes and
errors are the enqueue helper's (``enqueue.cli``): 0 done; 1 the API failed; 2 bad
usage, input or outputs, nothing done; 3 no task or dead letter by that name (the API
answered: nothing to show, cancel or replay); 130 interrupted. Errors are one line on
stderr, never a traceback.

This module loads no Cloud Tasks or Cloud Storage client, gRPC or rich at import:
``--help`` and usage errors stay fast for operators who script the command
(tests/ops/test_ops_startup.py). It holds no logic beyond parsing and printing.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from contract.task_types import task_type_problem
from enqueue.cli import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    OneLineParser,
    UsageError,
    positive_int,
)
from enqueue.defaults import TRANSPORTS
from enqueue.errors import EnqueueError, EnqueueFailedError, NotFoundError

# Distinct from 1 (the API failed): a script can tell "already gone" from "try again".
EXIT_NOT_FOUND = 3

if TYPE_CHECKING:
    from enqueue.outputs import StackOutputs
    from ops.dead_letters import DeadLetterRecord, DeadLetterStore
    from ops.tasks import Operations

PROG = "python -m ops"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description="Operate the stack's Cloud Tasks queues, tasks and dead letters "
        "(or the local stack's).",
        epilog="exit codes: 0 done; 1 the API failed; 2 bad usage/input/outputs, nothing "
        "done; 130 interrupted. CLOUD_TASKS_EMULATOR_HOST / STORAGE_EMULATOR_HOST select "
        "emulators. See the README, Operations.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", metavar="S", help="read outputs with `pulumi stack output`")
    source.add_argument("--outputs", metavar="FILE", help="read outputs from a JSON file")
    parser.add_argument(
        "--transport", choices=TRANSPORTS, default="grpc", help="API transport (default grpc)"
    )
    groups = parser.add_subparsers(
        dest="group", required=True, metavar="{tasks,queue,dead-letters}"
    )

    tasks = groups.add_parser("tasks", help="list, show or cancel tasks").add_subparsers(
        dest="action", required=True, metavar="{list,show,cancel}"
    )
    listing = tasks.add_parser("list", help="tasks of a queue (default: every queue)")
    listing.add_argument("--queue", metavar="KEY", help="only this queue (a key, e.g. email)")
    listing.add_argument("--limit", type=positive_int, metavar="N", help="at most N tasks")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    show = tasks.add_parser("show", help="one task, by id or full name")
    show.add_argument("name", metavar="NAME", help="task id or projects/.../tasks/ID")
    cancel = tasks.add_parser("cancel", help="delete a task, by name or idempotency key")
    cancel.add_argument("name", metavar="NAME", nargs="?", help="task id or full name")
    cancel.add_argument("--type", metavar="TYPE", help="with --key: the task's type")
    cancel.add_argument("--key", metavar="KEY", help="with --type: its idempotency key")

    queue = groups.add_parser("queue", help="pause, resume or purge a queue").add_subparsers(
        dest="action", required=True, metavar="{pause,resume,purge}"
    )
    for action, text in (
        ("pause", "stop dispatching (tasks can still be added)"),
        ("resume", "dispatch again"),
        ("purge", "delete every task of the queue"),
    ):
        command = queue.add_parser(action, help=text)
        command.add_argument("key", metavar="KEY", help="queue key, e.g. default")
        if action == "purge":
            command.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    letters = groups.add_parser("dead-letters", help="list, show or replay dead letters")
    dl = letters.add_subparsers(dest="action", required=True, metavar="{list,show,replay}")
    dl_list = dl.add_parser("list", help="dead letters in the bucket")
    dl_list.add_argument("--queue", metavar="KEY", help="only this queue's")
    dl_list.add_argument("--type", metavar="T", help="only this task type's")
    dl_list.add_argument("--json", action="store_true", help="one JSON array")
    dl_show = dl.add_parser("show", help="one dead letter, body decoded")
    dl_show.add_argument("id", metavar="ID", help="QUEUE_ID/TASK_ID (from list) or gs:// URI")
    replay = dl.add_parser("replay", help="enqueue dead letters again (deduplicated)")
    replay.add_argument("ids", metavar="ID", nargs="*", help="dead letters to replay")
    replay.add_argument("--queue", metavar="KEY", help="every dead letter of this queue")
    replay.add_argument("--type", metavar="T", help="every dead letter of this type")
    replay.add_argument("--all", action="store_true", help="every dead letter")
    replay.add_argument("--dry-run", action="store_true", help="print what would be sent")
    return parser


def _load(args: argparse.Namespace) -> StackOutputs:
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


def _dump(value: Any, out: IO[str]) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False), file=out)


def _indented(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    return "\n".join("    " + line for line in text.splitlines())


def _attempt_text(attempt: dict[str, Any] | None) -> str:
    if attempt is None:
        return "none"
    status = attempt["response_status"]
    answer = "no response" if status is None else f"code {status['code']} {status['message']}"
    return f"{attempt['dispatch_time']}: {answer}".strip()


def _print_task(view: dict[str, Any], out: IO[str]) -> None:
    print(
        f"{view['id']}  queue={view['queue']}  scheduled={view['schedule_time']}  "
        f"dispatches={view['dispatch_count']}  responses={view['response_count']}",
        file=out,
    )
    print(f"  first attempt: {_attempt_text(view['first_attempt'])}", file=out)
    print(f"  last attempt:  {_attempt_text(view['last_attempt'])}", file=out)
    print(f"  {view['method']} {view['url']}  body ({view['body_encoding']}):", file=out)
    if view["body"] is not None:
        print(_indented(view["body"]), file=out)


# --- tasks and queues ------------------------------------------------------------------


def _operations(args: argparse.Namespace, queue_key: str | None = None) -> Operations:
    """The client for the stack's queues, once the input is known to be valid."""
    from ops.tasks import Operations

    outputs = _load(args)
    if queue_key is not None:
        outputs.stack_queues.check_key(queue_key)  # before any credentials are looked for
    if args.group == "tasks" and args.action == "cancel" and args.type is not None:
        problem = task_type_problem(args.type)
        if problem is not None:
            raise UsageError(f"--type: {problem}")
    return Operations(outputs, transport=args.transport)


def _tasks(args: argparse.Namespace, out: IO[str]) -> int:
    if args.action == "cancel":
        by_key = (args.type is not None, args.key is not None)
        if by_key[0] != by_key[1]:
            raise UsageError("tasks cancel --type and --key go together")
        if (args.name is None) != all(by_key):
            raise UsageError(
                "tasks cancel takes a task NAME, or --type TYPE --key KEY (the idempotency key "
                "the task was enqueued with): one of the two"
            )
    ops = _operations(args, args.queue if args.action == "list" else None)
    try:
        if args.action == "list":
            views = ops.list_tasks(args.queue, args.limit)
            if args.json:
                _dump(list(views), out)
                return EXIT_OK
            count = 0
            for view in views:
                _print_task(view, out)
                count += 1
            print(f"{count} task(s)", file=out)
        elif args.action == "show":
            _dump(ops.show_task(args.name), out)
        else:
            name = args.name or ops.task_name_for_key(args.type, args.key)
            print(f"cancelled {ops.cancel_task(name)}", file=out)
    finally:
        ops.close()
    return EXIT_OK


def _confirm_purge(args: argparse.Namespace, path: str) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            f"queue purge {args.key} deletes every task of {path}: pass --yes to confirm "
            "(no terminal to ask on)"
        )
    print(
        f"purge deletes every task of {path}, which cannot be undone. Type the queue key "
        f"({args.key}) to confirm: ",
        end="",
        file=sys.stderr,
        flush=True,
    )
    if sys.stdin.readline().strip() != args.key:
        raise UsageError(f"not confirmed: queue {args.key} was not purged")


def _queue(args: argparse.Namespace, out: IO[str]) -> int:
    ops = _operations(args, args.key)
    try:
        path = ops.queue_path(args.key)
        if args.action == "purge":
            _confirm_purge(args, path)
        state = ops.change_queue(args.key, args.action)
    finally:
        ops.close()
    done = {"pause": "paused", "resume": "resumed", "purge": "purged"}[args.action]
    print(f"{done} {args.key} ({path}): state {state}", file=out)
    return EXIT_OK


# --- dead letters ----------------------------------------------------------------------


def _queue_prefix(outputs: StackOutputs, key: str | None) -> str:
    if key is None:
        return ""
    outputs.stack_queues.check_key(key)
    return outputs.stack_queues.paths[key].rsplit("/", 1)[-1] + "/"


def _selected(
    store: DeadLetterStore, outputs: StackOutputs, args: argparse.Namespace, *, strict: bool
) -> list[DeadLetterRecord]:
    """The records the filters select; ``strict``: a damaged one stops everything."""
    from ops.dead_letters import BadRecordError

    records = []
    for name in store.names(_queue_prefix(outputs, args.queue)):
        try:
            record = store.read(name)
        except BadRecordError as exc:
            if strict:
                raise UsageError(f"{exc}: nothing was replayed") from None
            print(f"warning: skipped {exc}", file=sys.stderr)
            continue
        if args.type is None or record.task_type == args.type:
            records.append(record)
    return records


def _dead_letters(args: argparse.Namespace, out: IO[str]) -> int:
    from ops.dead_letters import BadRecordError, DeadLetterStore

    if args.action == "replay":
        chosen = sum((bool(args.ids), args.all, args.queue is not None or args.type is not None))
        if chosen != 1:
            raise UsageError(
                "dead-letters replay selects one way: dead-letter IDs, a filter (--queue "
                "KEY, --type T, or both), or --all"
            )
    outputs = _load(args)
    store = DeadLetterStore(outputs)
    if args.action == "list":
        summaries = [r.summary() for r in _selected(store, outputs, args, strict=False)]
        if args.json:
            _dump(summaries, out)
            return EXIT_OK
        for s in summaries:
            print(
                f"{s['id']}  type={s['task_type']}  queue={s['queue']}  kind={s['kind']}  "
                f"attempts={s['attempts']}  recorded={s['recorded_at']}  "
                f"bytes={s['body_bytes']}  error={s['last_error']}",
                file=out,
            )
        print(f"{len(summaries)} dead letter(s) in gs://{store.bucket_name}", file=out)
        return EXIT_OK
    if args.action == "show":
        try:
            record = store.read(args.id)
        except BadRecordError as exc:
            raise UsageError(str(exc)) from None
        _dump({**record.detail(), "uri": store.uri(record.id)}, out)
        return EXIT_OK
    return _replay(args, outputs, store, out)


def _replay(
    args: argparse.Namespace, outputs: StackOutputs, store: DeadLetterStore, out: IO[str]
) -> int:
    from ops.dead_letters import BadRecordError
    from ops.replay import plan_replays

    if args.ids:
        try:
            records = [store.read(letter_id) for letter_id in dict.fromkeys(args.ids)]
        except BadRecordError as exc:
            raise UsageError(f"{exc}: nothing was replayed") from None
    else:
        records = _selected(store, outputs, args, strict=True)
    replays = plan_replays(records, outputs)  # every record checked before any is sent
    if args.dry_run:
        for replay in replays:
            print(json.dumps({"would_send": replay.describe()}, ensure_ascii=False), file=out)
        print(f"dry run: {len(replays)} dead letter(s) would be replayed, nothing sent", file=out)
        return EXIT_OK
    from enqueue.enqueuer import Enqueuer
    from enqueue.errors import LargeTaskWarning

    counts = {"created": 0, "already_enqueued": 0}
    with Enqueuer(outputs, transport=args.transport) as enqueuer, warnings.catch_warnings():
        # Printed below as one line each, rather than Python's two-line warning format.
        warnings.simplefilter("ignore", LargeTaskWarning)
        for replay in replays:
            try:
                result = enqueuer.enqueue(replay.spec)
            except EnqueueFailedError as exc:
                sent = counts["created"] + counts["already_enqueued"]
                raise EnqueueFailedError(
                    f"{exc} ({sent} of {len(replays)} replayed before it; replaying again is "
                    "safe: replayed tasks are named after their dead letters)",
                    name=exc.name,
                    attempts=exc.attempts,
                ) from None
            counts[result.status] += 1
            for message in result.warnings:
                print(f"warning: {message}", file=sys.stderr)
            state = "replayed" if result.status == "created" else "already enqueued"
            print(f"{state}: {replay.record.id} -> {result.name}", file=out)
    print(
        f"replayed {counts['created']}, already enqueued {counts['already_enqueued']} "
        f"(of {len(replays)})",
        file=out,
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None, *, out: IO[str] | None = None) -> int:
    """Run the CLI; returns the exit code (documented in the module docstring)."""
    out = out or sys.stdout

    def fail(message: str, code: int) -> int:
        print(f"error: {message}", file=sys.stderr)
        return code

    try:
        args = build_parser().parse_args(argv)
        if args.group == "tasks":
            return _tasks(args, out)
        if args.group == "queue":
            return _queue(args, out)
        return _dead_letters(args, out)
    except UsageError as exc:
        return fail(str(exc), EXIT_USAGE)
    except NotFoundError as exc:
        return fail(str(exc), EXIT_NOT_FOUND)
    except EnqueueFailedError as exc:
        return fail(str(exc), EXIT_FAILED)
    except EnqueueError as exc:
        return fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return fail(
            "interrupted: the call in flight may or may not have been done", EXIT_INTERRUPTED
        )
