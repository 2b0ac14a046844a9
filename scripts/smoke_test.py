#!/usr/bin/env python3
"""Smoke test of a deployed or local pipeline: exit 0 when it works.

    python scripts/smoke_test.py (--stack S | --outputs FILE) [--timeout S]

`--stack S` reads the outputs with `pulumi stack output --json --stack S` (the
cloud); `--outputs FILE` reads a JSON file of the same keys (the local stack
writes `.devstack/<stack>/outputs.json`). The same code runs for both:

1. privacy: a request to `service_url` without a token must be refused
   (401/403, or 404 behind internal ingress);
2. through EVERY queue of the stack (the `queues` output; the `default` queue
   alone for outputs without it) a uniquely named `smoke` task is enqueued
   with the enqueue helper (`queue=KEY`), then RunTask asks for its attempt at
   once: the smoke task does not wait behind the queue's backlog, its rate
   limit or a pause (RunTask needs `cloudtasks.tasks.run`; without it the task
   waits its turn, as said). The worker accepts `smoke` on any of the stack's
   queues (`service.queues`), so each proves its queue's path end to end;
3. GetTask (FULL view) is polled until each task is gone, which is how Cloud
   Tasks says "done"; failed attempts are shown with their status and a hint,
   and a timeout names the queue and its depth. All queues share `--timeout`;
4. exit 0 on pass, 1 with a one-line reason naming every failing queue, 2 on
   bad arguments or unreadable outputs.

Deliberately not here: checking what the worker did with the task beyond its
2xx (that is the worker's own tests), and any retry of the whole test (a flaky
smoke test would hide a flaky deploy). A task that disappears after a failed
attempt passes only if the queue's retry config proves it could not have been
given up on yet (Cloud Tasks also deletes a task whose retries ran out).
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# Run as a script (`python scripts/smoke_test.py`): make the repository's
# packages importable without installing them.
_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

try:
    import httpx
    from google.api_core import exceptions as gexc
    from google.cloud import tasks_v2
    from rich.console import Console
except ModuleNotFoundError as _missing:  # a fresh shell's `python` is not the project's
    from contract.interpreter import foreign_interpreter_message

    print(foreign_interpreter_message("python scripts/smoke_test.py", _missing), file=sys.stderr)
    sys.exit(2)

from contract.names import SMOKE_TASK_TYPE, TASK_ROUTE_PREFIX  # noqa: E402
from contract.resources import RUN_INVOKER_ROLE  # noqa: E402
from enqueue import EnqueueError, Enqueuer, StackOutputs, load_outputs  # noqa: E402

console = Console(stderr=True, highlight=False, soft_wrap=True)

# google.rpc.Code of an attempt's response_status -> the HTTP status Cloud Tasks mapped it from.
_CODE_TO_HTTP = {
    3: 400,  # INVALID_ARGUMENT
    16: 401,  # UNAUTHENTICATED
    7: 403,  # PERMISSION_DENIED
    5: 404,  # NOT_FOUND
    9: 400,  # FAILED_PRECONDITION
    8: 429,  # RESOURCE_EXHAUSTED
    12: 501,  # UNIMPLEMENTED
    13: 500,  # INTERNAL
    14: 503,  # UNAVAILABLE
    4: 504,  # DEADLINE_EXCEEDED
    2: 500,  # UNKNOWN
}
_HTTP_IN_MESSAGE = re.compile(r"\b([1-5][0-9][0-9])\b")


class SmokeFailure(Exception):
    """The pipeline does not work; the message is the one-line reason."""


@dataclass(frozen=True)
class AttemptView:
    dispatches: int
    responses: int
    http_status: int | None  # of the last attempt, when it has a response
    message: str
    first_attempt: datetime | None = None  # dispatch time of the first attempt

    @property
    def failed(self) -> bool:
        return self.http_status is not None and not 200 <= self.http_status < 300

    def describe(self) -> str:
        last = f"last attempt HTTP {self.http_status}" if self.http_status else "no response yet"
        extra = f" ({self.message})" if self.message else ""
        return f"{self.dispatches} dispatches, {self.responses} responses, {last}{extra}"


def hint_for(status: int | None, outputs: StackOutputs, log_hint: str) -> str:
    """What a failing attempt's status usually means, and where to look."""
    if status == 401:
        return (
            "401: the worker rejected the token: the task's OIDC audience must be "
            f"{outputs.audience!r} (the worker's TASKS_AUDIENCE) and the task must carry an "
            "OIDC ID token, not an OAuth access token"
        )
    if status == 403:
        return (
            f"403: {outputs.invoker_email} may not invoke the worker: check the "
            f"{RUN_INVOKER_ROLE} binding (cloudrunv2.ServiceIamMember) on the service. Right "
            "after a first deploy the grant may still be propagating (typically 2 and up to "
            "7 minutes, https://cloud.google.com/iam/docs/access-change-propagation): run "
            "the smoke test again before changing anything"
        )
    if status == 404:
        return (
            f"404: wrong URL or route: tasks go to {outputs.service_url}{TASK_ROUTE_PREFIX}TYPE; "
            "check service_url, the queue's uriOverride and that the worker serves the type"
        )
    if status is not None and status >= 500:
        return f"{status}: the worker failed: read its logs ({log_hint})"
    if status is not None:
        return f"{status}: the worker answered an error; read its logs ({log_hint})"
    return "no attempt answered: is the queue RUNNING and the worker reachable from the queue?"


def _log_hint(outputs: StackOutputs, outputs_file: Path | None) -> str:
    if outputs.emulator_host and outputs_file is not None:
        return str(outputs_file.parent / "worker.log")
    if outputs.emulator_host:
        return "the local stack's worker.log"
    return "Cloud Run logs of the service: gcloud run services logs read SERVICE"


def check_privacy(outputs: StackOutputs, timeout: float) -> int:
    """A request without a token must be refused; returns the status it got."""
    url = f"{outputs.service_url.rstrip('/')}{TASK_ROUTE_PREFIX}{SMOKE_TASK_TYPE}"
    try:
        response = httpx.post(url, json={"privacy-check": True}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise SmokeFailure(f"cannot reach {url}: {exc}; is service_url right and up?") from None
    if response.status_code in (401, 403, 404):
        return response.status_code
    if response.is_success:
        raise SmokeFailure(
            f"privacy: {url} answered {response.status_code} WITHOUT a token: the worker is "
            "public; keep invokerIamDisabled false and grant run.invoker only to the invoker"
        )
    raise SmokeFailure(
        f"privacy: {url} answered {response.status_code} without a token; expected 401/403 "
        "(or 404 behind internal ingress)"
    )


def attempt_view(task: tasks_v2.Task) -> AttemptView:
    last = task.last_attempt
    status: int | None = None
    message = ""
    if last and last.response_time:
        code = last.response_status.code
        message = last.response_status.message
        found = _HTTP_IN_MESSAGE.search(message)
        if found:
            status = int(found.group(1))
        elif code == 0:
            status = 200
        else:
            status = _CODE_TO_HTTP.get(code, 500)
    first: datetime | None = None
    if task.first_attempt and task.first_attempt.dispatch_time:
        first = task.first_attempt.dispatch_time
    return AttemptView(task.dispatch_count, task.response_count, status, message, first)


def retries_left(
    retry: tasks_v2.RetryConfig, first_attempt: datetime | None, now: datetime
) -> bool:
    """True when the queue could not have given up on the task yet.

    Cloud Tasks deletes a task both when an attempt succeeds and when its
    retries ran out, which is only once it was attempted max_attempts times AND
    max_retry_duration has passed since its first attempt (queue.proto). If
    either is still out of reach, a task that is gone has succeeded.
    """
    if retry.max_attempts == -1:
        return True  # unlimited attempts
    duration = retry.max_retry_duration.total_seconds() if retry.max_retry_duration else 0.0
    if duration > 0 and first_attempt is not None:
        return (now - first_attempt).total_seconds() < duration
    return False


def wait_done(
    client: tasks_v2.CloudTasksClient,
    name: str,
    *,
    timeout: float,
    interval: float,
) -> AttemptView | None:
    """Poll GetTask until NOT_FOUND; returns the last attempt seen before it went."""
    deadline = time.monotonic() + timeout
    last: AttemptView | None = None
    shown = ""
    with console.status(f"waiting for {name.rsplit('/', 1)[-1]} to be delivered") as spinner:
        while True:
            try:
                request = tasks_v2.GetTaskRequest(name=name, response_view=tasks_v2.Task.View.FULL)
                task = client.get_task(request=request, timeout=10)
            except gexc.NotFound:
                return last
            last = attempt_view(task)
            text = last.describe()
            if text != shown:
                shown = text
                spinner.update(f"smoke task: {text}")
                if last.failed:
                    console.print(f"  attempt failed: {text}", markup=False)
            if time.monotonic() > deadline:
                raise _Timeout(last)
            time.sleep(interval)


class _Timeout(Exception):
    def __init__(self, last: AttemptView) -> None:
        super().__init__(last.describe())
        self.last = last


@dataclass(frozen=True)
class _Sent:
    """The smoke task sent through one queue."""

    key: str
    queue: str  # full path
    name: str  # full task name


def run(
    outputs: StackOutputs, *, timeout: float, outputs_file: Path | None, interval: float
) -> str:
    """The whole smoke test; returns the one-line success message or raises SmokeFailure.

    One smoke task goes through every queue of the stack (`queues`; the one `default`
    queue for outputs without it). All are enqueued and run first, so they are
    delivered side by side; then each is awaited within the same `timeout`. Every
    queue is checked even after one fails, and the failure names each failing queue.
    """
    started = time.monotonic()
    privacy = check_privacy(outputs, timeout=min(timeout, 15.0))
    console.print(f"[green]ok[/] privacy: no token -> HTTP {privacy}", markup=True)

    log_hint = _log_hint(outputs, outputs_file)
    queues = outputs.stack_queues.paths
    failures: list[str] = []
    with Enqueuer(outputs) as enqueuer:
        sent: list[_Sent] = []
        for key, queue in queues.items():
            try:
                sent.append(_send_smoke(enqueuer, key, queue))
            except SmokeFailure as exc:
                failures.append(_failed(key, queue, str(exc)))
        deadline = started + timeout
        for smoke in sent:
            try:
                _await_smoke(
                    enqueuer.client,
                    outputs,
                    smoke,
                    timeout=max(deadline - time.monotonic(), interval),
                    interval=interval,
                    log_hint=log_hint,
                )
            except SmokeFailure as exc:
                failures.append(_failed(smoke.key, smoke.queue, str(exc)))
                continue
            console.print(f"[green]ok[/] queue {smoke.key}: delivered {smoke.name}", markup=True)
    if failures:
        raise SmokeFailure("; ".join(failures))
    return (
        f"smoke test passed in {time.monotonic() - started:.2f} s: a smoke task delivered "
        f"through each of {len(queues)} queue(s) ({', '.join(queues)})"
    )


def _failed(key: str, queue: str, reason: str) -> str:
    line = f"queue {key} ({queue}): {reason}"
    console.print(f"[red]FAILED[/] {line}", markup=True)
    return line


def _send_smoke(enqueuer: Enqueuer, key: str, queue: str) -> _Sent:
    """Enqueue a uniquely named smoke task on `key`'s queue and ask for its attempt now."""
    task_id = f"smoke-{secrets.token_hex(8)}"  # random: names must not be sequential
    try:
        name = enqueuer.send(
            SMOKE_TASK_TYPE,
            {"smoke": True, "queue": key, "at": datetime.now(UTC).isoformat()},
            name=task_id,
            queue=key,
        )
    except EnqueueError as exc:
        raise SmokeFailure(f"enqueue failed: {exc}") from None
    console.print(f"[green]ok[/] queue {key}: enqueued {name}", markup=True)
    _run_now(enqueuer.client, name)
    return _Sent(key, queue, name)


def _await_smoke(
    client: tasks_v2.CloudTasksClient,
    outputs: StackOutputs,
    smoke: _Sent,
    *,
    timeout: float,
    interval: float,
    log_hint: str,
) -> None:
    """Wait until the smoke task is done; raises SmokeFailure with the reason and a hint."""
    try:
        last = wait_done(client, smoke.name, timeout=timeout, interval=interval)
    except _Timeout as exc:
        _discard(client, smoke.name)
        reason = hint_for(exc.last.http_status, outputs, log_hint)
        if exc.last.http_status is None and _queue_paused(client, smoke.queue):
            reason = (
                f"the queue {smoke.queue} is PAUSED: nothing is dispatched until it is "
                "resumed (desiredState RUNNING, or ResumeQueue)"
            )
        depth = _queue_depth(client, smoke.queue)
        raise SmokeFailure(
            f"task not done within {timeout:.0f} s ({exc.last.describe()}; queue depth "
            f"{depth}); {reason}"
        ) from None
    except gexc.GoogleAPICallError as exc:
        raise SmokeFailure(f"GetTask failed: {exc.message}") from None
    if last is not None and last.failed:
        # Gone after a failure: a later attempt succeeded, or the queue gave up.
        if not _retries_were_left(client, smoke.queue, last):
            raise SmokeFailure(
                f"the task is gone after a failed attempt ({last.describe()}) and its "
                "retries may have run out, so this is no pass; "
                f"{hint_for(last.http_status, outputs, log_hint)}"
            )
        console.print(
            f"  note: queue {smoke.key}: delivered after failed attempts (last HTTP "
            f"{last.http_status}); right after a deploy IAM changes take a while to apply",
            markup=False,
        )
    if _queue_paused(client, smoke.queue):
        console.print(
            f"  note: the queue {smoke.queue} is PAUSED: RunTask delivered the smoke task, "
            "other tasks wait until it is resumed",
            markup=False,
        )


def _run_now(client: tasks_v2.CloudTasksClient, name: str) -> None:
    """RunTask: the attempt starts now, not behind the backlog, the rate or a pause
    (https://cloud.google.com/tasks/docs/reference/rpc/google.cloud.tasks.v2#runtask)."""
    try:
        client.run_task(name=name, timeout=10)
    except gexc.NotFound:
        pass  # already delivered and deleted: nothing to speed up
    except gexc.PermissionDenied:
        console.print(
            "  note: no cloudtasks.tasks.run permission for RunTask (roles/cloudtasks.taskRunner "
            "or admin): the smoke task waits its turn in the queue",
            markup=False,
        )
    except gexc.GoogleAPICallError as exc:
        console.print(f"  note: RunTask failed ({exc.message}); waiting in turn", markup=False)


DEPTH_COUNT_LIMIT = 5000


def _queue_depth(client: tasks_v2.CloudTasksClient, queue: str) -> str:
    """How many tasks the queue holds (up to DEPTH_COUNT_LIMIT), for a timeout message."""
    count = 0
    try:
        request = tasks_v2.ListTasksRequest(parent=queue, page_size=1000)
        for page in client.list_tasks(request=request, timeout=10).pages:
            count += len(page.tasks)
            if count >= DEPTH_COUNT_LIMIT:
                return f"at least {count}"
    except gexc.GoogleAPICallError as exc:
        return f"unknown ({exc.message})"
    return str(count)


def _queue_paused(client: tasks_v2.CloudTasksClient, queue_path: str) -> bool:
    try:
        queue = client.get_queue(name=queue_path, timeout=10)
    except gexc.GoogleAPICallError:
        return False
    return bool(queue.state == tasks_v2.Queue.State.PAUSED)


def _retries_were_left(
    client: tasks_v2.CloudTasksClient, queue_path: str, last: AttemptView
) -> bool:
    try:
        queue = client.get_queue(name=queue_path, timeout=10)
    except gexc.GoogleAPICallError:
        return False  # cannot tell: the safe side is no pass
    return retries_left(queue.retry_config, last.first_attempt, datetime.now(UTC))


def _discard(client: tasks_v2.CloudTasksClient, name: str) -> None:
    # A failing smoke task would keep retrying against the worker: remove it.
    try:
        client.delete_task(name=name, timeout=10)
    except gexc.GoogleAPICallError:
        console.print(f"  (could not delete {name}; it may still be retried)", markup=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="smoke_test.py", description="Exit 0 when the deployed or local pipeline works."
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="read outputs with `pulumi stack output --json`")
    source.add_argument("--outputs", type=Path, help="read outputs from this JSON file")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for delivery (default 60)"
    )
    parser.add_argument(
        "--interval", type=float, default=0.25, help="seconds between GetTask polls"
    )
    args = parser.parse_args(argv)
    if args.timeout <= 0 or args.interval <= 0:
        print("smoke test: --timeout and --interval must be positive seconds", file=sys.stderr)
        return 2
    try:
        if args.stack is not None:
            outputs = load_outputs(stack=args.stack)
        else:
            outputs = load_outputs(args.outputs)
    except EnqueueError as exc:
        print(f"smoke test: cannot read the stack outputs: {exc}", file=sys.stderr)
        return 2
    try:
        message = run(
            outputs, timeout=args.timeout, outputs_file=args.outputs, interval=args.interval
        )
    except SmokeFailure as exc:
        print(f"SMOKE TEST FAILED: {exc}", file=sys.stderr)
        return 1
    except EnqueueError as exc:  # client setup (credentials, endpoint)
        print(f"SMOKE TEST FAILED: {exc}", file=sys.stderr)
        return 1
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
