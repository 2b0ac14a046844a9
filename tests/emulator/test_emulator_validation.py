"""Unit tests of the pure rules: retry spacing, names, headers, URLs."""

from __future__ import annotations

import pytest

from emulator import validation as v
from emulator.errors import ApiError
from emulator.retry import retry_delay
from emulator.validation import burst_for


def test_retry_delay_matches_the_queue_proto_example() -> None:
    # queue.proto: min 10s, max 300s, 3 doublings -> 10, 20, 40, 80, 160, 240, 300, 300
    delays = [retry_delay(i, 10, 300, 3) for i in range(8)]
    assert delays == [10, 20, 40, 80, 160, 240, 300, 300]


def test_retry_delay_without_doublings_grows_linearly() -> None:
    assert [retry_delay(i, 2, 100, 0) for i in range(4)] == [2, 4, 6, 8]


def test_retry_delay_never_overflows_with_many_doublings() -> None:
    assert retry_delay(10_000, 1, 3600, 16) == 3600


def test_burst_is_at_least_one_second_of_rate() -> None:
    assert burst_for(500) == 500
    assert burst_for(0.5) == 1
    assert burst_for(2.2) == 3


@pytest.mark.parametrize(
    "name",
    [
        "projects/p/locations/l/queues/",
        "projects/p/locations/l/queues/has_underscore",
        "projects/p/queues/q",
        "projects/p/locations/l/queues/" + "a" * 101,
    ],
)
def test_bad_queue_names_are_invalid_argument(name: str) -> None:
    with pytest.raises(ApiError) as info:
        v.split_queue_name(name)
    assert info.value.code.name == "INVALID_ARGUMENT"


def test_task_name_allows_underscores_up_to_500_chars() -> None:
    queue = "projects/p/locations/l/queues/q"
    assert v.split_task_name(f"{queue}/tasks/{'a_' * 250}") == (queue, "a_" * 250)
    with pytest.raises(ApiError, match="task id"):
        v.split_task_name(f"{queue}/tasks/{'a' * 501}")


def test_header_values_with_newlines_are_rejected() -> None:
    with pytest.raises(ApiError, match="CR, LF"):
        v.check_headers({"X-Evil": "a\r\nInjected: yes"})


def test_url_must_be_absolute_http() -> None:
    for url in ("ftp://h/x", "/relative", "http://", "http://h:99999/"):
        with pytest.raises(ApiError):
            v.check_url(url)
    v.check_url("https://worker.example.com/tasks/x?y=1")
