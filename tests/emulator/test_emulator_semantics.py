"""Delivery semantics in-process on a fake clock: retries, backoff, limits, rate, pause, RunTask.

Each test drives :class:`emulator.core.Emulator` directly (tests/emulator/inproc.py)
with a scripted deliverer and advances a fake clock, so it runs in milliseconds
and checks times exactly. Wire formats and real HTTP are the subprocess tests'.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import google.auth.jwt
import grpc
import pytest

from contract.names import HEADER_EXECUTION_COUNT, HEADER_PREVIOUS_RESPONSE, HEADER_RETRY_COUNT
from emulator.errors import ApiError
from emulator.state import get_time
from emulator.store import Store
from tests.emulator.inproc import Harness

INVOKER = "invoker@emu-test.iam.gserviceaccount.com"
URL = "https://worker.example.com"


def _ms(seconds: float) -> float:
    """Fake time to the millisecond: floats near 1.8e9 s carry ~0.2 us of rounding."""
    return round(seconds, 3)


def _gaps(times: list[float]) -> list[float]:
    return [_ms(b - a) for a, b in itertools.pairwise(times)]


def _since(start: float, times: list[float]) -> list[float]:
    return [_ms(t - start) for t in times]


def _code(exc: pytest.ExceptionInfo[ApiError]) -> grpc.StatusCode:
    return exc.value.code


# -- retries and backoff -------------------------------------------------------------


async def test_retries_follow_the_retry_config_then_give_up(core: Harness) -> None:
    queue = core.create_queue(
        retry_config={
            "max_attempts": 4,
            "min_backoff": "1s",
            "max_backoff": "2s",
            "max_doublings": 1,
        }
    )
    task = core.create_task(queue, http_request={"url": f"{URL}/status/500"})
    await core.advance(60)
    sent = core.deliverer.for_task(task.name)
    assert _gaps([s.at for s in sent]) == [1, 2, 2]  # 1 s, one doubling, capped at 2 s
    assert [s.headers[HEADER_RETRY_COUNT] for s in sent] == ["0", "1", "2", "3"]
    assert HEADER_PREVIOUS_RESPONSE not in sent[0].headers
    assert sent[1].headers[HEADER_PREVIOUS_RESPONSE] == "500"
    # 5xx responses do not count as executions.
    assert {s.headers[HEADER_EXECUTION_COUNT] for s in sent} == {"0"}
    assert not core.exists(task.name)


async def test_backoff_doubles_max_doublings_times_then_grows_linearly_to_max(
    core: Harness,
) -> None:
    queue = core.create_queue(
        retry_config={
            "max_attempts": 8,
            "min_backoff": "1s",
            "max_backoff": "10s",
            "max_doublings": 2,
        }
    )
    task = core.create_task(queue, http_request={"url": f"{URL}/status/500"})
    await core.advance(120)
    sent = core.deliverer.for_task(task.name)
    # 1, 2, 4 (two doublings), then +4 s per retry (8, 12 -> capped at 10), 10, 10.
    assert _gaps([s.at for s in sent]) == [1, 2, 4, 8, 10, 10, 10]


async def test_both_limits_must_be_reached_before_giving_up(core: Harness) -> None:
    queue = core.create_queue(
        retry_config={
            "max_attempts": 2,
            "max_retry_duration": "3s",
            "min_backoff": "1s",
            "max_backoff": "1s",
        }
    )
    task = core.create_task(queue, http_request={"url": f"{URL}/status/500"})
    start = core.now()
    await core.advance(30)
    # max_attempts (2) alone would have stopped after 2 attempts; max_retry_duration
    # (3 s since the first attempt) is reached at the fourth.
    assert _since(start, [s.at for s in core.deliverer.for_task(task.name)]) == [0, 1, 2, 3]
    assert not core.exists(task.name)


async def test_unlimited_attempts_stop_at_max_retry_duration(core: Harness) -> None:
    queue = core.create_queue(
        retry_config={
            "max_attempts": -1,
            "max_retry_duration": "2s",
            "min_backoff": "1s",
            "max_backoff": "1s",
        }
    )
    task = core.create_task(queue, http_request={"url": f"{URL}/status/500"})
    start = core.now()
    await core.advance(30)
    assert _since(start, [s.at for s in core.deliverer.for_task(task.name)]) == [0, 1, 2]
    assert not core.exists(task.name)


async def test_execution_count_counts_non_5xx_responses(core: Harness) -> None:
    queue = core.create_queue(
        retry_config={"max_attempts": 2, "min_backoff": "1s", "max_backoff": "1s"}
    )
    task = core.create_task(queue, http_request={"url": f"{URL}/status/404"})
    await core.advance(5)
    first, second = core.deliverer.for_task(task.name)
    assert first.headers[HEADER_EXECUTION_COUNT] == "0"
    assert second.headers[HEADER_EXECUTION_COUNT] == "1"
    assert second.headers[HEADER_PREVIOUS_RESPONSE] == "404"


async def test_task_succeeding_after_failures_is_deleted(core: Harness) -> None:
    queue = core.create_queue(retry_config={"min_backoff": "1s", "max_backoff": "1s"})
    task = core.create_task(queue, http_request={"url": f"{URL}/flaky/1"})
    await core.advance(10)
    assert len(core.deliverer.for_task(task.name)) == 2
    assert not core.exists(task.name)


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured(core: Harness, status: int) -> None:
    queue = core.create_queue(
        retry_config={"max_attempts": 2, "min_backoff": "1s", "max_backoff": "1s"}
    )
    task = core.create_task(queue, http_request={"url": f"{URL}/status/{status}"})
    await core.advance(10)
    first, second = core.deliverer.for_task(task.name)
    assert _ms(second.at - first.at) == 2  # the worker said Retry-After: 2


async def test_unreachable_target_is_retried_with_unavailable(core: Harness) -> None:
    queue = core.create_queue(retry_config={"min_backoff": "1s", "max_backoff": "1s"})
    task = core.create_task(queue, http_request={"url": f"{URL}/unreachable"})
    await core.advance(0.5)
    full = core.get_task(task.name)
    assert full.dispatch_count == 1
    assert full.response_count == 0
    assert full.last_attempt.response_status.code == grpc.StatusCode.UNAVAILABLE.value[0]
    await core.advance(1)
    assert core.get_task(task.name).dispatch_count == 2


async def test_failed_attempt_is_visible_in_the_full_view(core: Harness) -> None:
    queue = core.create_queue(retry_config={"min_backoff": "60s", "max_backoff": "60s"})
    task = core.create_task(queue, http_request={"url": f"{URL}/status/500"})
    start = core.now()
    await core.advance(1)
    full = core.get_task(task.name)
    assert full.dispatch_count == 1
    assert full.response_count == 1
    assert _ms(get_time(full.first_attempt.dispatch_time) - start) == 0
    assert _ms(get_time(full.last_attempt.response_time) - start) == 0
    assert full.last_attempt.response_status.code == grpc.StatusCode.INTERNAL.value[0]
    assert full.last_attempt.response_status.message == "HTTP 500"
    assert _ms(get_time(full.schedule_time) - start) == 60


async def test_dispatch_deadline_aborts_the_attempt(core: Harness) -> None:
    queue = core.create_queue(retry_config={"min_backoff": "30s", "max_backoff": "30s"})
    task = core.create_task(queue, http_request={"url": f"{URL}/sleep/40"}, dispatch_deadline="15s")
    start = core.now()
    await core.advance(14.9)
    assert core.get_task(task.name).last_attempt.response_status.code == 0  # still running
    await core.advance(0.2)
    full = core.get_task(task.name)
    assert full.dispatch_count == 1
    assert full.response_count == 0
    assert full.last_attempt.response_status.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert "15s" in full.last_attempt.response_status.message
    assert _ms(get_time(full.schedule_time) - start) == 15 + 30
    assert core.deliverer.active == 0  # the slow delivery was cancelled


# -- rate, burst, concurrency, pause --------------------------------------------------


async def test_rate_limit_and_burst_are_held(core: Harness) -> None:
    queue = core.create_queue(rate_limits={"max_dispatches_per_second": 5})
    core.pause(queue)
    for _ in range(15):
        core.create_task(queue, http_request={"url": URL})
    await core.advance(10)  # the bucket fills to its burst (5) while paused
    assert core.deliverer.sent == []
    start = core.now()
    core.resume(queue)
    await core.advance(5)
    times = _since(start, [s.at for s in core.deliverer.sent])
    # 5 at once, then one every 0.2 s.
    assert times == [0.0] * 5 + [_ms(0.2 * i) for i in range(1, 11)]


async def test_max_concurrent_dispatches_is_held(core: Harness) -> None:
    queue = core.create_queue(rate_limits={"max_concurrent_dispatches": 2})
    start = core.now()
    for _ in range(6):
        core.create_task(queue, http_request={"url": f"{URL}/sleep/0.3"})
    await core.advance(2)
    assert core.deliverer.max_active == 2
    assert _since(start, [s.at for s in core.deliverer.sent]) == [0, 0, 0.3, 0.3, 0.6, 0.6]


async def test_paused_queue_holds_tasks_until_resumed(core: Harness) -> None:
    queue = core.create_queue()
    core.pause(queue)
    task = core.create_task(queue, http_request={"url": URL})
    await core.advance(3600)
    assert core.deliverer.sent == []
    core.resume(queue)
    await core.settle()
    assert len(core.deliverer.for_task(task.name)) == 1


async def test_run_task_on_paused_queue_delivers_once(core: Harness) -> None:
    queue = core.create_queue()
    core.pause(queue)
    task = core.create_task(queue, http_request={"url": f"{URL}/sleep/0.3"})
    ran = core.run_task(task.name)
    assert ran.dispatch_count == 1
    core.run_task(task.name)  # already in flight: no second delivery
    await core.advance(0.5)
    core.resume(queue)
    await core.advance(5)
    assert len(core.deliverer.for_task(task.name)) == 1
    assert not core.exists(task.name)


async def test_run_task_forces_a_future_task_now(core: Harness) -> None:
    queue = core.create_queue()
    task = core.create_task(
        queue, http_request={"url": URL}, schedule_time={"seconds": int(core.now()) + 3600}
    )
    core.run_task(task.name)
    await core.settle()
    [sent] = core.deliverer.for_task(task.name)
    assert _ms(sent.at - core.now()) == 0
    with pytest.raises(ApiError) as info:
        core.run_task(task.name)
    assert _code(info) == grpc.StatusCode.NOT_FOUND


# -- schedule time, purge -------------------------------------------------------------


async def test_schedule_time_is_honoured(core: Harness) -> None:
    queue = core.create_queue()
    eta = core.now() + 1.5
    task = core.create_task(
        queue, http_request={"url": URL}, schedule_time={"seconds": int(eta), "nanos": 500_000_000}
    )
    await core.advance(1.49)
    assert core.deliverer.for_task(task.name) == []
    await core.advance(0.02)
    [sent] = core.deliverer.for_task(task.name)
    assert _ms(sent.at - eta) == 0


async def test_schedule_time_in_the_past_runs_now(core: Harness) -> None:
    queue = core.create_queue()
    task = core.create_task(queue, http_request={"url": URL}, schedule_time={"seconds": 1})
    await core.settle()
    assert len(core.deliverer.for_task(task.name)) == 1


async def test_purge_removes_every_task(core: Harness) -> None:
    queue = core.create_queue()
    for _ in range(3):
        core.create_task(
            queue, http_request={"url": URL}, schedule_time={"seconds": int(core.now()) + 1}
        )
    purged = core.purge(queue)
    assert _ms(get_time(purged.purge_time) - core.now()) == 0
    assert core.list_tasks(queue) == []
    await core.advance(5)
    assert core.deliverer.sent == []


async def test_deleting_a_queue_mid_attempt_drops_its_tasks(core: Harness) -> None:
    queue = core.create_queue()
    task = core.create_task(queue, http_request={"url": f"{URL}/sleep/1"})
    await core.settle()
    core.delete_queue(queue)
    await core.advance(5)
    assert len(core.deliverer.for_task(task.name)) == 1
    assert core.emulator.health()["tasks"] == 0


# -- tombstones -----------------------------------------------------------------------


async def test_named_task_stays_reserved_after_it_ran(core: Harness) -> None:
    queue = core.create_queue()
    name = f"{queue}/tasks/once-only"
    core.create_task(queue, name=name, http_request={"url": URL})
    await core.advance(1)
    with pytest.raises(ApiError, match="used recently") as info:
        core.create_task(queue, name=name, http_request={"url": URL})
    assert _code(info) == grpc.StatusCode.ALREADY_EXISTS
    assert len(core.deliverer.for_task(name)) == 1
    # The documented test hook frees every reserved name.
    assert core.emulator.reset_tombstones() == 1
    core.create_task(queue, name=name, http_request={"url": URL})
    await core.settle()
    assert len(core.deliverer.for_task(name)) == 2


async def test_deleted_task_name_is_reserved_and_never_delivered(core: Harness) -> None:
    queue = core.create_queue()
    name = f"{queue}/tasks/cancelled"
    core.create_task(
        queue, name=name, http_request={"url": URL}, schedule_time={"seconds": int(core.now()) + 1}
    )
    core.delete_task(name)
    for call in (lambda: core.get_task(name), lambda: core.delete_task(name)):
        with pytest.raises(ApiError) as info:
            call()
        assert _code(info) == grpc.StatusCode.NOT_FOUND
    with pytest.raises(ApiError) as info:
        core.create_task(queue, name=name, http_request={"url": URL})
    assert _code(info) == grpc.StatusCode.ALREADY_EXISTS
    await core.advance(5)
    assert core.deliverer.for_task(name) == []


async def test_tombstone_window_is_configurable_and_swept(short_tombstones: Harness) -> None:
    core = short_tombstones  # tombstone_seconds=1
    queue = core.create_queue()
    name = f"{queue}/tasks/short-window"
    core.create_task(queue, name=name, http_request={"url": URL})
    await core.settle()
    await core.advance(0.9)
    with pytest.raises(ApiError):
        core.create_task(queue, name=name, http_request={"url": URL})
    await core.advance(0.2)
    core.create_task(queue, name=name, http_request={"url": URL})
    await core.settle()
    assert len(core.deliverer.for_task(name)) == 2
    assert core.emulator.health()["tombstones"] == 1
    await core.advance(31)  # the sweeper runs every 30 s
    assert core.emulator.health()["tombstones"] == 0


# -- queue-level http_target ----------------------------------------------------------


async def test_queue_uri_override_always_rewrites_host_port_and_path(core: Harness) -> None:
    queue = core.create_queue(
        http_target={
            "uri_override": {
                "scheme": "HTTP",
                "host": "127.0.0.1",
                "port": 8080,
                "path_override": {"path": "/overridden"},
            },
            "header_overrides": [{"header": {"key": "X-Queue", "value": "q"}}],
            "oidc_token": {"service_account_email": INVOKER, "audience": "https://aud"},
        }
    )
    task = core.create_task(queue, http_request={"url": "https://unreachable.invalid/mine"})
    await core.settle()
    [sent] = core.deliverer.for_task(task.name)
    assert sent.request.url == "http://127.0.0.1:8080/overridden"
    assert sent.headers["X-Queue"] == "q"
    token = sent.headers["Authorization"].removeprefix("Bearer ")
    claims = google.auth.jwt.decode(token, verify=False)  # type: ignore[no-untyped-call]
    assert claims["aud"] == "https://aud"
    assert claims["email"] == INVOKER
    # The token is issued on the emulator's clock, like every other time it keeps.
    assert claims["iat"] == int(core.now())


async def test_queue_uri_override_if_not_exists_keeps_task_parts(core: Harness) -> None:
    queue = core.create_queue(
        http_target={
            "uri_override": {
                "path_override": {"path": "/default-path"},
                "uri_override_enforce_mode": "IF_NOT_EXISTS",
            }
        }
    )
    mine = core.create_task(queue, http_request={"url": f"{URL}/mine"})
    bare = core.create_task(queue, http_request={"url": URL})
    await core.settle()
    assert core.deliverer.for_task(mine.name)[0].path == "/mine"
    assert core.deliverer.for_task(bare.name)[0].path == "/default-path"


async def test_lowering_the_rate_clips_the_saved_burst(core: Harness) -> None:
    queue = core.create_queue(rate_limits={"max_dispatches_per_second": 5})
    core.pause(queue)
    for _ in range(4):
        core.create_task(queue, http_request={"url": URL})
    await core.advance(10)  # 5 tokens saved up
    core.update_queue(queue, rate_limits={"max_dispatches_per_second": 1})
    start = core.now()
    core.resume(queue)
    await core.advance(10)
    # max_burst_size follows the rate (1), so one at once, then one a second.
    assert _since(start, [s.at for s in core.deliverer.sent]) == [0, 1, 2, 3]


# -- persistence in-process: what a restart resumes -----------------------------------


async def test_a_restart_resumes_the_retry_schedule_and_keeps_tombstones(
    tmp_path: Path,
) -> None:
    db = tmp_path / "emu.db"
    async with Harness(store=Store(db)) as before:
        queue = before.create_queue(retry_config={"min_backoff": "10s", "max_backoff": "10s"})
        failing = before.create_task(queue, http_request={"url": f"{URL}/flaky/1"})
        done = f"{queue}/tasks/done"
        before.create_task(queue, name=done, http_request={"url": URL})
        await before.advance(1)
        start = before.now() - 1
    async with Harness(store=Store(db), start=start + 5) as after:
        state = after.get_task(failing.name)
        assert state.dispatch_count == 1
        assert _ms(get_time(state.schedule_time) - start) == 10
        with pytest.raises(ApiError) as info:
            after.create_task(queue, name=done, http_request={"url": URL})
        assert _code(info) == grpc.StatusCode.ALREADY_EXISTS
        # The worker remembers the first failure, so the retry succeeds.
        after.deliverer.counts[failing.name.rsplit("/", 1)[1]] = 1
        await after.advance(4.9)
        assert after.deliverer.sent == []
        await after.advance(0.2)
        [retry] = after.deliverer.for_task(failing.name)
        assert retry.headers[HEADER_RETRY_COUNT] == "1"
        assert retry.headers[HEADER_PREVIOUS_RESPONSE] == "500"
        assert not after.exists(failing.name)
