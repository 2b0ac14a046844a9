"""`GET /metrics`: the queue signals the alerts watch, in Prometheus text format.

In-process on a fake clock for what each series counts (a backlog on a paused
queue ages, failing attempts are counted by code and class, drops counted), and
against a real emulator process for the endpoint itself. Every exposition is read
with the strict parser of tests/prometheus_text.py, which refuses invalid text.
"""

from __future__ import annotations

import pytest
import requests

from emulator.metrics import render
from emulator.testing import EmulatorProcess
from tests.emulator.inproc import Harness
from tests.emulator.support import eventually
from tests.prometheus_text import ExpositionError, Family, parse

URL = "https://worker.example.com"
TWO_ATTEMPTS = {"max_attempts": 2, "min_backoff": "1s", "max_backoff": "1s"}


def _families(core: Harness) -> dict[str, Family]:
    return parse(render(core.emulator))


async def test_failing_attempts_are_counted_by_code_and_class(core: Harness) -> None:
    queue = core.create_queue(retry_config=TWO_ATTEMPTS)
    core.create_task(queue, http_request={"url": f"{URL}/status/503"})
    core.create_task(queue, http_request={"url": f"{URL}/status/403"})
    core.create_task(queue, http_request={"url": f"{URL}/ok"})
    await core.advance(10)
    families = _families(core)
    attempts = families["cloudtasks_queue_task_attempt_count_total"]
    assert attempts.type == "counter"
    by_code = {
        (s.labels["response_code"], s.labels["response_code_class"]): s.value
        for s in attempts.samples
        if s.labels["queue"] == queue
    }
    assert by_code == {("ok", "2xx"): 1, ("unavailable", "5xx"): 2, ("permission_denied", "4xx"): 2}
    assert families["cloudtasks_queue_dropped_tasks_total"].value(queue=queue) == 2
    assert families["cloudtasks_queue_tasks_completed_total"].value(queue=queue) == 1
    assert families["cloudtasks_queue_tasks_dispatched_total"].value(queue=queue) == 5
    assert families["cloudtasks_queue_depth"].value(queue=queue) == 0
    delays = families["cloudtasks_queue_task_attempt_delays_seconds"]
    assert delays.type == "histogram"
    assert delays.value("_count", queue=queue) == 5
    assert families["cloudtasks_emulator_dispatched_total"].value() == 5
    short_id = queue.rsplit("/", 1)[-1]
    assert families["cloudtasks_queue_depth"].value(queue_id=short_id) == 0


async def test_a_paused_backlog_grows_and_ages(core: Harness) -> None:
    queue = core.create_queue()
    core.pause(queue)
    for _ in range(3):
        core.create_task(queue, http_request={"url": f"{URL}/ok"})
    await core.advance(90)
    families = _families(core)
    assert families["cloudtasks_queue_depth"].value(queue=queue) == 3
    assert families["cloudtasks_queue_paused"].value(queue=queue) == 1
    age = families["cloudtasks_queue_oldest_task_age_seconds"].value(queue=queue)
    assert 89 <= age <= 91
    core.resume(queue)
    await core.advance(5)
    families = _families(core)
    assert families["cloudtasks_queue_depth"].value(queue=queue) == 0
    assert families["cloudtasks_queue_oldest_task_age_seconds"].value(queue=queue) == 0
    delays = families["cloudtasks_queue_task_attempt_delays_seconds"]
    # Each attempt started 90 s late: all in the (60, 300] bucket.
    assert delays.value("_bucket", queue=queue, le="60") == 0
    assert delays.value("_bucket", queue=queue, le="300") == 3
    assert 270 <= delays.value("_sum", queue=queue) <= 290


async def test_a_task_not_yet_due_is_not_late(core: Harness) -> None:
    queue = core.create_queue()
    core.create_task(
        queue, http_request={"url": URL}, schedule_time={"seconds": int(core.now()) + 600}
    )
    await core.advance(30)
    families = _families(core)
    assert families["cloudtasks_queue_depth"].value(queue=queue) == 1
    assert families["cloudtasks_queue_oldest_task_age_seconds"].value(queue=queue) == 0


def test_the_parser_refuses_invalid_text() -> None:
    """The reader the other tests rely on does refuse what is not the format."""
    good = "# TYPE a counter\na_total 1\n"
    parse("# TYPE a_total counter\na_total 1\n")
    for bad in (
        'a{b="c} 1\n',  # unterminated label value
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n",  # family not contiguous
        "# TYPE a gauge\na 1\na 2\n",  # series twice
        '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\n',
        '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_count 1\n',
        "# TYPE c counter\nc -1\n",
        "a 1",  # no final line feed
        good.replace("counter", "thing"),
    ):
        with pytest.raises(ExpositionError):
            parse(bad)


@pytest.mark.integration
def test_process_serves_metrics(make_queue: object, emu: EmulatorProcess) -> None:
    client = emu.client()
    queue = make_queue()  # type: ignore[operator]
    client.pause_queue(name=queue)
    client.create_task(parent=queue, task={"http_request": {"url": "http://127.0.0.1:9/x"}})
    response = requests.get(f"{emu.http_url}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = parse(response.text)
    assert families["cloudtasks_queue_depth"].value(queue=queue) == 1
    assert families["cloudtasks_queue_paused"].value(queue=queue) == 1
    assert eventually(
        lambda: (
            parse(requests.get(f"{emu.http_url}/metrics", timeout=5).text)[
                "cloudtasks_queue_oldest_task_age_seconds"
            ].value(queue=queue)
            > 0
        ),
        timeout=5,
    )
