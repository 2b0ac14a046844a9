"""The async enqueuer's first attempt (straight on the transport's stub) and its retries.

Most tests talk to a real gRPC server that speaks ``CloudTasks.CreateTask`` and
answers what the test scripts (an error for some attempts of some tasks), since
the emulator cannot be told to fail one call: it checks the metadata the first
attempt sends against the generated client's, that only transient errors are
retried (with the same name, bounded by attempts and deadline), and that a bulk
run reports each failure on its own line. The last test makes the real emulator
fail some tasks of a bulk run (a queue it does not have).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcAsyncIOTransport

from emulator.testing import EmulatorProcess
from enqueue import AsyncEnqueuer, EnqueueFailedError, RetryPolicy, StackOutputs, TaskSpec
from enqueue.cli import main
from enqueue.client import AttemptCounter, next_attempt
from tests.enqueue.conftest import AUDIENCE, INVOKER, LOCATION, PROJECT, make_queue, task_names

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_emulator_env")]
QUEUE = f"projects/{PROJECT}/locations/{LOCATION}/queues/scripted"
FAST = RetryPolicy(initial=0.01, maximum=0.05, deadline=10, max_attempts=5, attempt_timeout=5)
NO_ENV: dict[str, str] = {}
# An answer: None (create it) or the status and message to abort the call with.
Answer = Callable[[Any, int], tuple[grpc.StatusCode, str] | None]


@dataclass
class ScriptedApi:
    """What the scripted server saw: each call's task name, attempt and metadata."""

    answer: Answer
    host: str = ""
    calls: list[tuple[str, int, dict[str, str]]] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attempts(self, name: str) -> int:
        return sum(1 for called, _, _ in self.calls if called == name)


@contextlib.contextmanager
def scripted_api(answer: Answer) -> Iterator[ScriptedApi]:
    api = ScriptedApi(answer)

    def create_task(request: Any, context: grpc.ServicerContext) -> Any:
        name = request.task.name
        with api.lock:
            attempt = api.attempts(name) + 1
            api.calls.append((name, attempt, dict(context.invocation_metadata())))
        verdict = answer(request, attempt)
        if verdict is not None:
            context.abort(*verdict)
        with api.lock:
            api.created.append(name)
        return request.task

    handler = grpc.method_handlers_generic_handler(
        "google.cloud.tasks.v2.CloudTasks",
        {
            "CreateTask": grpc.unary_unary_rpc_method_handler(
                create_task,
                request_deserializer=tasks_v2.CreateTaskRequest.pb().FromString,
                response_serializer=tasks_v2.Task.pb().SerializeToString,
            )
        },
    )
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    api.host = f"127.0.0.1:{port}"
    try:
        yield api
    finally:
        server.stop(0)


def outputs_mapping(host: str, queue: str = QUEUE) -> dict[str, str]:
    return {
        "project": PROJECT,
        "location": LOCATION,
        "queue": queue,
        "service_url": "https://worker.example.test",
        "audience": AUDIENCE,
        "invoker_email": INVOKER,
        "emulator_host": host,
    }


def enqueue(api: ScriptedApi, spec: TaskSpec, retry: RetryPolicy = FAST) -> Any:
    async def run() -> Any:
        outputs = StackOutputs.from_mapping(outputs_mapping(api.host))
        async with AsyncEnqueuer(outputs, env=NO_ENV, retry=retry) as enqueuer:
            return await enqueuer.enqueue(spec)

    return asyncio.run(run())


def failing(code: grpc.StatusCode, attempts: int) -> Answer:
    """Abort the first ``attempts`` calls of every task with ``code``."""
    return lambda request, attempt: (code, "scripted") if attempt <= attempts else None


def test_the_first_attempt_sends_what_the_generated_client_sends() -> None:
    with scripted_api(lambda request, attempt: None) as api:
        result = enqueue(api, TaskSpec(type="meta", key="k1"))

        async def generated_client() -> None:
            channel = grpc.aio.insecure_channel(api.host)
            client = tasks_v2.CloudTasksAsyncClient(
                transport=CloudTasksGrpcAsyncIOTransport(channel=channel)
            )
            task = tasks_v2.Task(name=f"{QUEUE}/tasks/by-the-client")
            await client.create_task(request=tasks_v2.CreateTaskRequest(parent=QUEUE, task=task))
            await channel.close()

        asyncio.run(generated_client())
    assert result.status == "created"
    assert [name for name, _, _ in api.calls] == [result.name, f"{QUEUE}/tasks/by-the-client"]
    ours, theirs = (metadata for _, _, metadata in api.calls)
    for key in ("x-goog-request-params", "x-goog-api-client"):
        assert ours[key] == theirs[key], key
    assert ours["x-goog-request-params"] == f"parent={QUEUE}"


def test_transient_errors_are_retried_with_the_same_name() -> None:
    with scripted_api(failing(grpc.StatusCode.UNAVAILABLE, 2)) as api:
        result = enqueue(api, TaskSpec(type="flaky", key="k2"))
    assert (result.status, result.attempts) == ("created", 3)
    assert [(name, attempt) for name, attempt, _ in api.calls] == [
        (result.name, 1),
        (result.name, 2),
        (result.name, 3),
    ]
    assert api.created == [result.name]


def test_a_retried_attempt_carries_the_same_metadata() -> None:
    with scripted_api(failing(grpc.StatusCode.UNAVAILABLE, 1)) as api:
        enqueue(api, TaskSpec(type="flaky", key="k3"))
    first, second = (metadata for _, _, metadata in api.calls)
    assert first["x-goog-request-params"] == second["x-goog-request-params"]
    assert first["x-goog-api-client"] == second["x-goog-api-client"]


def test_a_permanent_error_is_not_retried() -> None:
    with (
        scripted_api(failing(grpc.StatusCode.INVALID_ARGUMENT, 99)) as api,
        pytest.raises(EnqueueFailedError) as info,
    ):
        enqueue(api, TaskSpec(type="bad", key="k4"))
    assert info.value.attempts == 1
    assert len(api.calls) == 1
    assert "rejected the task (StatusCode.INVALID_ARGUMENT: scripted)" in str(info.value)


def test_attempts_are_bounded() -> None:
    with (
        scripted_api(failing(grpc.StatusCode.UNAVAILABLE, 99)) as api,
        pytest.raises(EnqueueFailedError) as info,
    ):
        enqueue(api, TaskSpec(type="down", key="k5"))
    assert info.value.attempts == FAST.max_attempts
    assert len(api.calls) == FAST.max_attempts
    assert "answered UNAVAILABLE after 5 attempts (scripted)" in str(info.value)


@pytest.mark.parametrize("max_attempts", [1, 2])
def test_attempts_are_bounded_also_when_few(max_attempts: int) -> None:
    retry = RetryPolicy(initial=0.01, maximum=0.05, deadline=10, max_attempts=max_attempts)
    with (
        scripted_api(failing(grpc.StatusCode.UNAVAILABLE, 99)) as api,
        pytest.raises(EnqueueFailedError) as info,
    ):
        enqueue(api, TaskSpec(type="down", key="k6"), retry)
    assert info.value.attempts == max_attempts
    assert len(api.calls) == max_attempts


def test_the_deadline_bounds_the_retries() -> None:
    retry = RetryPolicy(initial=0.05, maximum=0.1, deadline=0.5, max_attempts=1000)
    with scripted_api(failing(grpc.StatusCode.UNAVAILABLE, 10_000)) as api:
        started = time.monotonic()
        with pytest.raises(EnqueueFailedError) as info:
            enqueue(api, TaskSpec(type="down", key="k7"), retry)
        took = time.monotonic() - started
    assert took < 3.0
    assert 1 < info.value.attempts < 1000
    assert "UNAVAILABLE" in str(info.value)


def test_already_exists_on_the_first_attempt_is_already_enqueued() -> None:
    with scripted_api(failing(grpc.StatusCode.ALREADY_EXISTS, 99)) as api:
        result = enqueue(api, TaskSpec(type="dup", key="k8"))
    assert (result.status, result.attempts) == ("already_enqueued", 1)


def test_a_lost_answer_for_a_random_name_counts_as_created() -> None:
    # Attempt 1 "fails" in transit; attempt 2 finds the task attempt 1 made.
    def answer(request: Any, attempt: int) -> tuple[grpc.StatusCode, str] | None:
        code = grpc.StatusCode.UNAVAILABLE if attempt == 1 else grpc.StatusCode.ALREADY_EXISTS
        return code, "scripted"

    with scripted_api(answer) as api:
        result = enqueue(api, TaskSpec(type="random"))
    assert (result.status, result.attempts) == ("created", 2)


def test_cli_bulk_reports_each_api_failure_on_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Per-task answers in one run: some refused, some flaky then created, the rest
    created at once; the summary, the failures file and the exit code say which."""

    def answer(request: Any, attempt: int) -> tuple[grpc.StatusCode, str] | None:
        data = json.loads(request.task.http_request.body)
        if data.get("refuse"):
            return grpc.StatusCode.INVALID_ARGUMENT, f"refused {data['i']}"
        if data.get("flaky") and attempt == 1:
            return grpc.StatusCode.UNAVAILABLE, "flaky"
        return None

    refused, flaky = {3, 17, 40}, {5, 6, 22, 41}
    lines = [
        json.dumps({"type": "bulk", "data": {"i": i, "refuse": i in refused, "flaky": i in flaky}})
        for i in range(60)
    ]
    source = tmp_path / "tasks.jsonl"
    source.write_text("\n".join(lines) + "\n")
    with scripted_api(answer) as api:
        outputs = tmp_path / "outputs.json"
        outputs.write_text(json.dumps(outputs_mapping(api.host)))
        out = io.StringIO()
        code = main(
            ["--outputs", str(outputs), "bulk", str(source), "--concurrency", "16"], out=out
        )
    text = out.getvalue()
    assert code == 1
    assert text.startswith("created 57, already enqueued 0, failed 3 (of 60 in ")
    shown = [line for line in text.splitlines() if line.startswith("failed: ")]
    assert shown == [
        f"failed: line {i + 1}: the emulator at {api.host} (grpc) rejected the task "
        f"(StatusCode.INVALID_ARGUMENT: refused {i})"
        for i in sorted(refused)
    ]
    records = [json.loads(line) for line in (tmp_path / "tasks.failures.jsonl").open()]
    assert sorted(r["_failure"]["line"] for r in records) == [i + 1 for i in sorted(refused)]
    assert all(r["name"] for r in records), "a refused task keeps the name it was tried with"
    assert len(api.created) == len(set(api.created)) == 57
    assert max(api.attempts(name) for name in api.created) == 2
    assert capsys.readouterr().err == ""


def test_cli_bulk_partial_failure_on_the_emulator(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    """A queue key the outputs name but the emulator lacks: NOT_FOUND for those lines only."""
    queue = make_queue(emulator, paused=True)
    ghost = f"projects/{PROJECT}/locations/{LOCATION}/queues/ghost-{time.time_ns()}"
    mapping: dict[str, Any] = {
        **outputs_mapping(emulator.grpc_host, queue),
        "queues": {"default": queue, "ghost": ghost},
    }
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(mapping))
    lines = [
        json.dumps(
            {"type": "bulk", "data": {"i": i}, **({"queue": "ghost"} if i % 10 == 4 else {})}
        )
        for i in range(100)
    ]
    source = tmp_path / "tasks.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = io.StringIO()
    code = main(["--outputs", str(outputs), "bulk", str(source)], out=out)
    text = out.getvalue()
    assert code == 1
    assert text.startswith("created 90, already enqueued 0, failed 10 (of 100 in ")
    shown = [line for line in text.splitlines() if line.startswith("failed: ")]
    assert [line.split(":")[1] for line in shown] == [f" line {i}" for i in range(5, 100, 10)]
    assert all(f"queue {ghost} not found" in line for line in shown)
    assert len(task_names(emulator, queue)) == 90


def api_error(kind: type[gexc.GoogleAPICallError], message: str) -> gexc.GoogleAPICallError:
    return kind(message)


class TestNextAttempt:
    """The step from the first attempt to the client's retry, without a server."""

    POLICY = RetryPolicy(initial=0.2, maximum=1.0, multiplier=3.0, deadline=10, max_attempts=4)

    def test_a_transient_error_continues_the_backoff_progression(self) -> None:
        counter = AttemptCounter(self.POLICY.max_attempts)
        delay, rest = next_attempt(
            self.POLICY, counter, api_error(gexc.ServiceUnavailable, "down"), 1.0
        )
        assert 0.0 <= delay <= 0.2
        assert counter.attempts == 2
        assert rest.initial == pytest.approx(0.6)  # the second backoff ceiling
        assert rest.deadline == pytest.approx(9.0 - delay)
        assert (rest.maximum, rest.max_attempts) == (1.0, 4)

    def test_a_permanent_error_is_raised_as_is(self) -> None:
        counter = AttemptCounter(self.POLICY.max_attempts)
        error = api_error(gexc.InvalidArgument, "bad")
        with pytest.raises(gexc.InvalidArgument) as info:
            next_attempt(self.POLICY, counter, error, 0.1)
        assert info.value is error
        assert counter.attempts == 1

    def test_one_attempt_allowed_raises_the_first_error(self) -> None:
        policy = RetryPolicy(max_attempts=1)
        with pytest.raises(gexc.ServiceUnavailable):
            next_attempt(policy, AttemptCounter(1), api_error(gexc.ServiceUnavailable, "down"), 0.1)

    def test_past_the_deadline_is_a_retry_error_with_the_cause(self) -> None:
        counter = AttemptCounter(self.POLICY.max_attempts)
        error = api_error(gexc.ServiceUnavailable, "down")
        with pytest.raises(gexc.RetryError) as info:
            next_attempt(self.POLICY, counter, error, 10.5)
        assert info.value.cause is error
