"""Requests the emulator used to accept and then fail on at dispatch (or store wrongly):
each is refused up front with INVALID_ARGUMENT, or, for a valid but huge
backoff, retried at the latest representable time instead of a traceback loop.

In-process: the core (emulator.core via tests/emulator/inproc.py) for the rules,
the REST app over ASGI for the JSON mapping (https://protobuf.dev/programming-guides/json/).
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
import httpx
import pytest

from emulator import paging
from emulator.errors import ApiError
from emulator.rest_api import build_app
from emulator.retry import MAX_RETRY_AT, RetryAt, RetryPolicy, decide
from emulator.state import get_time
from tests.emulator.inproc import PARENT, Harness

URL = "https://worker.example.com"
LARGEST_DURATION = "315576000000s"  # google/protobuf/duration.proto: +10,000 years


def _invalid(call: Any, match: str) -> None:
    with pytest.raises(ApiError, match=match) as info:
        call()
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


# -- a large but valid backoff ---------------------------------------------------------


async def test_the_largest_backoff_retries_at_the_last_timestamp_without_a_hot_loop(
    core: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    retry = {"min_backoff": LARGEST_DURATION, "max_backoff": LARGEST_DURATION}
    queue = core.create_queue(retry_config=retry)
    task = core.create_task(queue, http_request={"url": f"{URL}/status/500"})
    with caplog.at_level(logging.ERROR):
        for _ in range(5):
            await core.advance(60)
    assert len(core.deliverer.for_task(task.name)) == 1  # no 1 s retry loop
    assert get_time(core.get_task(task.name).schedule_time) == MAX_RETRY_AT
    assert not caplog.records


def test_the_retry_decision_never_leaves_the_timestamp_range() -> None:
    huge = 315_576_000_000.0
    policy = RetryPolicy(-1, 0.0, huge, huge, 16)
    outcome = decide(policy, attempts=40, first_attempt_at=1e9, now=1.8e9, status=503)
    assert outcome == RetryAt(MAX_RETRY_AT)


# -- queue-level overrides ------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri_override", "match"),
    [
        ({"host": "a\x00b"}, "host"),
        ({"host": "a\r\nHost: evil"}, "host"),
        ({"host": "a b"}, "host"),
        ({"host": "a/b"}, "host"),
        ({"path_override": {"path": "/a\r\nX: y"}}, "path"),
        ({"path_override": {"path": "/a\x00"}}, "path"),
        ({"path_override": {"path": "/a b"}}, "path"),
        ({"query_override": {"query_params": "a=1\r\n"}}, "query"),
        ({"query_override": {"query_params": "a=1#frag"}}, "query"),
        ({"scheme": 7}, "scheme"),
        ({"uri_override_enforce_mode": 9}, "enforce_mode"),
        ({"port": 70000}, "port"),
    ],
    ids=repr,
)
async def test_a_queue_uri_override_that_cannot_make_a_url_is_refused(
    core: Harness, uri_override: dict[str, Any], match: str
) -> None:
    target = {"uri_override": uri_override}
    _invalid(lambda: core.create_queue(http_target=target), match)
    queue = core.create_queue()
    _invalid(lambda: core.update_queue(queue, http_target=target), match)


async def test_a_bad_queue_http_method_is_refused(core: Harness) -> None:
    _invalid(lambda: core.create_queue(http_target={"http_method": 42}), "http_method")


async def test_a_task_whose_url_the_override_breaks_is_refused_at_create(core: Harness) -> None:
    queue = core.create_queue(http_target={"uri_override": {"port": 0, "host": "h"}})
    core.create_task(queue, http_request={"url": f"{URL}/ok"})  # port 0 = the default port
    bad = core.create_queue(
        http_target={"uri_override": {"scheme": 1, "uri_override_enforce_mode": 1}}
    )
    _invalid(lambda: core.create_task(bad, http_request={"url": "ftp://x/"}), "must be")


# -- headers ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a\x01b", "a\x1fb", "a\x7fb", "a\x0bb", "\x1b[31m"])
async def test_header_values_with_control_characters_are_refused(core: Harness, value: str) -> None:
    queue = core.create_queue()
    _invalid(
        lambda: core.create_task(queue, http_request={"url": URL, "headers": {"X-A": value}}),
        "control character",
    )
    overrides = [{"header": {"key": "X-A", "value": value}}]
    _invalid(
        lambda: core.update_queue(queue, http_target={"header_overrides": overrides}),
        "control character",
    )
    # HTAB is allowed (RFC 9110 section 5.5).
    core.create_task(queue, http_request={"url": URL, "headers": {"X-A": "a\tb"}})


@pytest.mark.parametrize(
    "name", ["Transfer-Encoding", "transfer-encoding", "Connection", "Upgrade", "TE", "Keep-Alive"]
)
async def test_hop_by_hop_headers_are_refused_as_reserved(core: Harness, name: str) -> None:
    queue = core.create_queue()
    _invalid(
        lambda: core.create_task(queue, http_request={"url": URL, "headers": {name: "chunked"}}),
        "hop-by-hop",
    )
    overrides = [{"header": {"key": name, "value": "chunked"}}]
    _invalid(lambda: core.create_queue(http_target={"header_overrides": overrides}), "hop-by-hop")


async def test_computed_headers_are_still_accepted_and_dropped(core: Harness) -> None:
    # target.proto: Host, Content-Length, User-Agent... are ignored or replaced, not refused.
    queue = core.create_queue()
    task = core.create_task(
        queue, http_request={"url": f"{URL}/ok", "body": b"x", "headers": {"Content-Length": "99"}}
    )
    await core.advance(1)
    [sent] = core.deliverer.for_task(task.name)
    assert "Content-Length" not in sent.headers
    assert not any(k.lower() == "transfer-encoding" for k in sent.headers)


# -- page tokens ----------------------------------------------------------------------


async def test_a_list_tasks_page_token_is_refused_by_list_queues(core: Harness) -> None:
    from google.cloud import tasks_v2

    queue = core.create_queue()
    token = paging.page_token(f"{queue}/tasks/t1")
    request = tasks_v2.ListQueuesRequest.pb()(parent=PARENT, page_token=token)
    _invalid(lambda: core.emulator.list_queues(request), "page_token")
    # Its own tokens still work.
    own = tasks_v2.ListQueuesRequest.pb()(parent=PARENT, page_token=paging.page_token(queue))
    assert list(core.emulator.list_queues(own).queues) == []


# -- the REST JSON mapping ------------------------------------------------------------


async def _post(h: Harness, path: str, body: dict[str, Any]) -> httpx.Response:
    transport = httpx.ASGITransport(app=build_app(h.emulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:1") as c:
        return await c.post(path, json=body)


@pytest.mark.parametrize("body", ["!!!notbase64", "a", "YQ=", "YQ===", "YQ==YQ==", "Y Q==", 7])
async def test_rest_bytes_that_are_not_base64_are_refused(core: Harness, body: Any) -> None:
    queue = core.create_queue()
    resp = await _post(
        core, f"/v2/{queue}/tasks", {"task": {"httpRequest": {"url": URL, "body": body}}}
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert core.list_tasks(queue) == []


@pytest.mark.parametrize("body", ["YQ==", "YQ", "-_8=", "+/8=", ""])
async def test_rest_bytes_in_either_base64_alphabet_are_accepted(core: Harness, body: str) -> None:
    queue = core.create_queue()
    resp = await _post(
        core, f"/v2/{queue}/tasks", {"task": {"httpRequest": {"url": URL, "body": body}}}
    )
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/tasks", {"task": {"httpRequest": {"url": URL, "httpMethod": 4294967297}}}),
        ("/tasks", {"task": {"httpRequest": {"url": URL, "httpMethod": -1}}}),
        ("/tasks", {"task": {"httpRequest": {"url": URL}}, "responseView": 4294967298}),
        ("", {"httpTarget": {"uriOverride": {"scheme": 4294967297}}}),
    ],
)
async def test_rest_enum_numbers_out_of_range_are_refused(
    core: Harness, path: str, body: dict[str, Any]
) -> None:
    queue = core.create_queue()
    transport = httpx.ASGITransport(app=build_app(core.emulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:1") as c:
        method = "POST" if path else "PATCH"
        resp = await c.request(method, f"/v2/{queue}{path}", json=body)
        query = await c.get(f"/v2/{queue}/tasks", params={"responseView": "4294967298"})
    assert resp.status_code == 400, resp.text
    assert "enum" in resp.json()["error"]["message"]
    assert query.status_code == 400, query.text
    assert core.list_tasks(queue) == []
