"""Queue RPCs through the official Python client over insecure gRPC."""

from __future__ import annotations

from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.protobuf import field_mask_pb2

from emulator.testing import EmulatorProcess

pytestmark = pytest.mark.integration


def test_create_queue_fills_googles_defaults(client: Any, parent: str) -> None:
    name = f"{parent}/queues/defaults-{id(client) % 1000}"
    q = client.create_queue(parent=parent, queue={"name": name})
    assert q.state == tasks_v2.Queue.State.RUNNING
    assert q.rate_limits.max_dispatches_per_second == 500
    assert q.rate_limits.max_burst_size == 500
    assert q.rate_limits.max_concurrent_dispatches == 1000
    assert q.retry_config.max_attempts == 100
    assert q.retry_config.max_backoff.total_seconds() == 3600
    assert q.retry_config.max_doublings == 16
    assert client.get_queue(name=name) == q


def test_burst_derived_from_rate_and_durations_truncated(make_queue: Any, client: Any) -> None:
    name = make_queue(
        rate_limits={"max_dispatches_per_second": 7.5, "max_burst_size": 999},
        retry_config={"min_backoff": "1.9s", "max_backoff": "5.7s"},
    )
    q = client.get_queue(name=name)
    assert q.rate_limits.max_burst_size == 8
    assert q.retry_config.min_backoff.total_seconds() == 1
    assert q.retry_config.max_backoff.total_seconds() == 5


def test_create_existing_queue_is_already_exists(client: Any, queue_name: str, parent: str) -> None:
    with pytest.raises(exceptions.AlreadyExists):
        client.create_queue(parent=parent, queue={"name": queue_name})


@pytest.mark.parametrize("queue_id", ["bad_underscore", "has.dot", "x" * 101, "spaces here"])
def test_invalid_queue_id_is_invalid_argument(client: Any, parent: str, queue_id: str) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="queue id"):
        client.create_queue(parent=parent, queue={"name": f"{parent}/queues/{queue_id}"})


def test_queue_outside_parent_is_invalid_argument(client: Any, parent: str) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="not under the parent"):
        client.create_queue(parent=parent, queue={"name": "projects/other/locations/l/queues/q"})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"rate_limits": {"max_dispatches_per_second": 501}}, "max_dispatches_per_second"),
        ({"rate_limits": {"max_concurrent_dispatches": 5001}}, "max_concurrent_dispatches"),
        ({"retry_config": {"max_attempts": -2}}, "max_attempts"),
        ({"retry_config": {"min_backoff": "10s", "max_backoff": "5s"}}, "min_backoff"),
        ({"stackdriver_logging_config": {"sampling_ratio": 1.5}}, "sampling_ratio"),
        (
            {"http_target": {"oidc_token": {"service_account_email": "a@b.com"}}},
            "audience",
        ),
    ],
)
def test_bad_queue_settings_are_invalid_argument(
    client: Any, parent: str, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(exceptions.InvalidArgument, match=message):
        client.create_queue(
            parent=parent, queue={"name": f"{parent}/queues/bad-settings", **fields}
        )


def test_get_missing_queue_is_not_found(client: Any, parent: str) -> None:
    with pytest.raises(exceptions.NotFound):
        client.get_queue(name=f"{parent}/queues/never-created")


def test_list_queues_paginates(client: Any, emu: EmulatorProcess) -> None:
    parent = "projects/list-test/locations/europe-west1"
    names = {f"{parent}/queues/page-{i}" for i in range(5)}
    for n in names:
        client.create_queue(parent=parent, queue={"name": n})
    pager = client.list_queues(request={"parent": parent, "page_size": 2})
    pages = list(pager.pages)
    assert [len(p.queues) for p in pages] == [2, 2, 1]
    assert {q.name for p in pages for q in p.queues} == names


def test_list_queues_filters_by_state(client: Any) -> None:
    parent = "projects/filter-test/locations/l"
    client.create_queue(parent=parent, queue={"name": f"{parent}/queues/running"})
    client.create_queue(parent=parent, queue={"name": f"{parent}/queues/paused"})
    client.pause_queue(name=f"{parent}/queues/paused")
    paused = list(client.list_queues(request={"parent": parent, "filter": "state: PAUSED"}))
    assert [q.name for q in paused] == [f"{parent}/queues/paused"]
    with pytest.raises(exceptions.InvalidArgument, match="filter"):
        list(client.list_queues(request={"parent": parent, "filter": "name = x"}))


def test_update_queue_applies_only_the_mask(client: Any, queue_name: str) -> None:
    q = client.update_queue(
        queue={
            "name": queue_name,
            "rate_limits": {"max_dispatches_per_second": 3, "max_concurrent_dispatches": 7},
        },
        update_mask=field_mask_pb2.FieldMask(paths=["rate_limits.max_dispatches_per_second"]),
    )
    assert q.rate_limits.max_dispatches_per_second == 3
    assert q.rate_limits.max_burst_size == 3
    assert q.rate_limits.max_concurrent_dispatches == 1000


def test_update_queue_rejects_unknown_mask_paths(client: Any, queue_name: str) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="state"):
        client.update_queue(
            queue={"name": queue_name}, update_mask=field_mask_pb2.FieldMask(paths=["state"])
        )


def test_update_missing_queue_creates_it(client: Any, parent: str) -> None:
    name = f"{parent}/queues/created-by-update"
    q = client.update_queue(queue={"name": name, "rate_limits": {"max_dispatches_per_second": 2}})
    assert q.state == tasks_v2.Queue.State.RUNNING
    assert client.get_queue(name=name).rate_limits.max_dispatches_per_second == 2


def test_pause_resume_and_delete(client: Any, queue_name: str) -> None:
    assert client.pause_queue(name=queue_name).state == tasks_v2.Queue.State.PAUSED
    assert client.resume_queue(name=queue_name).state == tasks_v2.Queue.State.RUNNING
    client.delete_queue(name=queue_name)
    with pytest.raises(exceptions.NotFound):
        client.get_queue(name=queue_name)
    with pytest.raises(exceptions.NotFound):
        client.pause_queue(name=queue_name)


def test_iam_rpcs_are_unimplemented_with_a_clear_message(client: Any, queue_name: str) -> None:
    with pytest.raises(exceptions.MethodNotImplemented, match="IAM policies are not emulated"):
        client.get_iam_policy(request={"resource": queue_name})
