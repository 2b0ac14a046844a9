"""Task specs: every validation error with its message, and the request built from them."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import tasks_v2
from hypothesis import assume, given, settings, strategies as st

from contract.limits import MAX_TASK_BYTES, TASK_ID_PATTERN, WARN_TASK_BYTES
from contract.retry_policy import RetryPolicy as TaskRetryPolicy
from enqueue import StackOutputs, TaskSpec, TaskValidationError, build_task, task_id_for_key

OUTPUTS = StackOutputs.from_mapping(
    {
        "project": "demo",
        "location": "us-central1",
        "queue": "projects/demo/locations/us-central1/queues/work",
        "service_url": "https://worker-xyz-uc.a.run.app/",
        "audience": "https://worker.example.com",
        "invoker_email": "invoker@demo.iam.gserviceaccount.com",
    }
)
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def build(spec: TaskSpec, task_id: str = "t1") -> tasks_v2.Task:
    return build_task(spec, OUTPUTS, task_id=task_id, now=NOW).task


class TestRequest:
    def test_http_request_is_complete(self) -> None:
        task = build(TaskSpec(type="email", data={"to": "a@b.c", "n": 1}))
        request = task.http_request
        assert task.name == "projects/demo/locations/us-central1/queues/work/tasks/t1"
        assert request.url == "https://worker-xyz-uc.a.run.app/tasks/email"
        assert request.http_method == tasks_v2.HttpMethod.POST
        assert dict(request.headers) == {
            "Content-Type": "application/json",
            "X-Tasks-Not-Before": str(int(NOW.timestamp())),
        }
        assert json.loads(request.body) == {"to": "a@b.c", "n": 1}
        assert request.oidc_token.service_account_email == OUTPUTS.invoker_email
        assert request.oidc_token.audience == "https://worker.example.com"

    def test_default_payload_is_an_empty_object(self) -> None:
        assert build(TaskSpec(type="ping")).http_request.body == b"{}"

    def test_raw_body_and_content_type_override(self) -> None:
        task = build(TaskSpec(type="blob", body=b"\x00\x01", headers={"content-type": "x/y"}))
        assert task.http_request.body == b"\x00\x01"
        assert dict(task.http_request.headers)["content-type"] == "x/y"
        assert "Content-Type" not in dict(task.http_request.headers)

    def test_extra_headers_kept(self) -> None:
        task = build(TaskSpec(type="a", headers={"X-Trace": "abc"}))
        assert dict(task.http_request.headers)["X-Trace"] == "abc"

    def test_own_retry_config_is_set_and_told_to_the_worker(self) -> None:
        policy = TaskRetryPolicy(
            max_attempts=2, min_backoff=1, max_backoff=4, max_doublings=1, max_retry_duration=60
        )
        task = build(TaskSpec(type="a", retry=policy))
        retry = task.retry_config
        assert (retry.max_attempts, retry.max_doublings) == (2, 1)
        assert retry.min_backoff == timedelta(seconds=1)
        assert retry.max_backoff == timedelta(seconds=4)
        assert retry.max_retry_duration == timedelta(seconds=60)
        told = json.loads(dict(task.http_request.headers)["X-Tasks-Retry-Config"])
        assert TaskRetryPolicy.from_json(told, where="header") == policy
        plain = build(TaskSpec(type="a"))
        assert not tasks_v2.Task.pb(plain).HasField("retry_config")
        assert "X-Tasks-Retry-Config" not in dict(plain.http_request.headers)

    def test_delay_schedule_and_deadline(self) -> None:
        task = build(TaskSpec(type="a", delay=90, deadline=45))
        assert task.schedule_time == NOW + timedelta(seconds=90)
        # The first attempt cannot come before the schedule time: the worker's bound.
        assert dict(task.http_request.headers)["X-Tasks-Not-Before"] == str(
            int((NOW + timedelta(seconds=90)).timestamp())
        )
        assert task.dispatch_deadline == timedelta(seconds=45)
        at = NOW + timedelta(days=2)
        assert build(TaskSpec(type="a", schedule_time=at)).schedule_time == at

    def test_no_schedule_or_deadline_unless_asked(self) -> None:
        pb = tasks_v2.Task.pb(build(TaskSpec(type="a")))
        assert not pb.HasField("schedule_time")
        assert not pb.HasField("dispatch_deadline")


class TestNames:
    def test_key_hashes_deterministically(self) -> None:
        one = TaskSpec(type="email", key="order 42/é").task_id()
        assert one == TaskSpec(type="email", key="order 42/é").task_id()
        assert one == task_id_for_key("email", "order 42/é")
        assert one is not None
        assert len(one) == 32
        assert all(c in "0123456789abcdef" for c in one)

    def test_key_is_scoped_by_type(self) -> None:
        assert task_id_for_key("email", "k") != task_id_for_key("invoice", "k")

    def test_literal_name_is_used_as_is(self) -> None:
        assert TaskSpec(type="a", name="Order_42-b").task_id() == "Order_42-b"
        assert TaskSpec(type="a").task_id() is None


def expect(field: str, message: str, **kwargs: Any) -> None:
    with pytest.raises(TaskValidationError, match=message) as info:
        build(TaskSpec(**kwargs))
    assert info.value.field == field


class TestValidation:
    @pytest.mark.parametrize(
        "task_type", ["", "a/b", "-x", "_private", ".hidden", "a b", "x" * 101, "ünï"]
    )
    def test_type(self, task_type: str) -> None:
        expect("type", "is not a valid task type", type=task_type)

    @pytest.mark.parametrize("task_type", ["report.v2", "a", "A_b-c.d", "9" * 100])
    def test_type_accepted(self, task_type: str) -> None:
        assert build(TaskSpec(type=task_type)).http_request.url.endswith("/tasks/" + task_type)

    def test_name_characters(self) -> None:
        expect("name", "characters Cloud Tasks does not allow \\(' \\.'\\)", type="a", name="a b.c")

    def test_name_length(self) -> None:
        expect("name", "must be 1..500 characters, got 501", type="a", name="x" * 501)
        expect("name", "must be 1..500 characters, got 0", type="a", name="")

    def test_name_that_is_a_path(self) -> None:
        expect("name", "give the short task id", type="a", name="projects/p/tasks/x")

    def test_name_and_key(self) -> None:
        expect("name", "not both", type="a", name="x", key="y")

    def test_empty_key(self) -> None:
        expect("key", "non-empty", type="a", key="")

    def test_payload_over_1_mib(self) -> None:
        expect(
            "data", "over the 1048576-byte \\(1 MiB\\) limit", type="a", data="x" * MAX_TASK_BYTES
        )

    def test_payload_over_100_kb_warns(self) -> None:
        built = build_task(TaskSpec(type="a", data="x" * WARN_TASK_BYTES), OUTPUTS, task_id="t")
        assert len(built.warnings) == 1
        assert "over the 100000-byte limit" in built.warnings[0]
        small = build_task(TaskSpec(type="a", data="x" * 1000), OUTPUTS, task_id="t")
        assert small.warnings == ()

    def test_data_not_json(self) -> None:
        expect("data", "not JSON-serialisable", type="a", data={"when": NOW})
        expect("data", "not JSON-serialisable", type="a", data={"x": float("nan")})

    def test_body_not_bytes(self) -> None:
        expect("body", "must be bytes", type="a", body="text")

    @pytest.mark.parametrize("delay", [-1, 30 * 24 * 3600 + 1])
    def test_delay_range(self, delay: float) -> None:
        expect("delay", "outside 0..2592000 s", type="a", delay=delay)

    def test_delay_not_number(self) -> None:
        expect("delay", "must be a number", type="a", delay="10")
        expect("delay", "must be a number", type="a", delay=True)

    def test_schedule_time_beyond_30_days(self) -> None:
        expect(
            "schedule_time",
            "more than 30 days ahead",
            type="a",
            schedule_time=NOW + timedelta(days=31),
        )

    def test_schedule_time_naive(self) -> None:
        expect("schedule_time", "timezone-aware", type="a", schedule_time=datetime(2030, 1, 1))

    def test_delay_and_schedule(self) -> None:
        expect("delay", "not both", type="a", delay=1, schedule_time=NOW)

    @pytest.mark.parametrize("deadline", [14.9, 1801, 0])
    def test_deadline_range(self, deadline: float) -> None:
        expect("deadline", "outside 15..1800 s", type="a", deadline=deadline)

    def test_deadline_bounds_are_allowed(self) -> None:
        assert build(TaskSpec(type="a", deadline=15)).dispatch_deadline == timedelta(seconds=15)
        assert build(TaskSpec(type="a", deadline=1800)).dispatch_deadline == timedelta(minutes=30)

    def test_headers_too_large(self) -> None:
        expect("headers", "less than 80000", type="a", headers={"X-Big": "v" * 80_000})

    @pytest.mark.parametrize(
        "name",
        [
            "Host",
            "user-agent",
            "Authorization",
            "X-CloudTasks-TaskName",
            "X-Google-Foo",
            "X-AppEngine-Bar",
            "Content-Length",
            "Transfer-Encoding",
            "Connection",
            "Upgrade",
        ],
    )
    def test_reserved_headers(self, name: str) -> None:
        expect("headers", f"^headers: {name} is .*: remove it$", type="a", headers={name: "v"})

    def test_header_name_and_value(self) -> None:
        expect("headers", "not a valid HTTP header name", type="a", headers={"Bad Name": "v"})
        expect("headers", "contains CR, LF or NUL", type="a", headers={"X-A": "v\r\nX-B: 1"})

    def test_url_too_long(self) -> None:
        long = StackOutputs.from_mapping(
            {
                **{
                    k: getattr(OUTPUTS, k)
                    for k in ("project", "location", "queue", "audience", "invoker_email")
                },
                "service_url": "https://example.com/" + "p" * 2100,
            }
        )
        with pytest.raises(TaskValidationError, match="over 2083"):
            build_task(TaskSpec(type="a"), long, task_id="t")


class TestProperties:
    @given(task_type=st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True), key=st.text())
    @settings(max_examples=200, deadline=None)
    def test_any_key_hashes_to_a_valid_id(self, task_type: str, key: str) -> None:
        assume(key)
        task_id = TaskSpec(type=task_type, key=key).task_id()
        assert task_id is not None
        assert re.fullmatch(TASK_ID_PATTERN, task_id)
        assert build(TaskSpec(type=task_type, key=key), task_id=task_id).name.endswith(task_id)

    @given(name=st.text(max_size=600))
    @settings(max_examples=300, deadline=None)
    def test_any_name_is_accepted_or_explained(self, name: str) -> None:
        if re.fullmatch(TASK_ID_PATTERN, name):
            assert TaskSpec(type="a", name=name).task_id() == name
        else:
            with pytest.raises(TaskValidationError) as info:
                TaskSpec(type="a", name=name)
            assert info.value.field == "name"

    @given(
        data=st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(),
            lambda c: st.lists(c) | st.dictionaries(st.text(), c),
            max_leaves=20,
        )
    )
    @settings(max_examples=100, deadline=None)
    def test_json_payload_round_trips(self, data: Any) -> None:
        assert json.loads(build(TaskSpec(type="a", data=data)).http_request.body) == data


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("field", ["initial", "maximum", "deadline", "attempt_timeout"])
def test_retry_policy_refuses_non_finite_durations(field: str, value: float) -> None:
    from enqueue import RetryPolicy

    with pytest.raises(ValueError, match="positive, finite numbers of seconds"):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]


def test_retry_policy_refuses_a_non_finite_multiplier() -> None:
    from enqueue import RetryPolicy

    with pytest.raises(ValueError, match="multiplier must be a finite number"):
        RetryPolicy(multiplier=float("nan"))


@pytest.mark.parametrize(
    ("delay", "shown"), [(2592001, "2592001"), (2592001.0, "2592001"), (2592000.25, "2592000.25")]
)
def test_delay_error_shows_the_number_given(delay: float, shown: str) -> None:
    with pytest.raises(TaskValidationError, match=rf"^delay: {re.escape(shown)} s is outside"):
        TaskSpec(type="a", delay=delay)
