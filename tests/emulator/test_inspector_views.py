"""What the inspector shows (emulator/inspector_views.py) and the attempt ring behind it,
in-process on a fake clock: bodies decoded, the history bounded, successes not kept;
and the page's files reach an installed emulator (package data)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.inspector import PAGE_FILES
from emulator.inspector_views import BODY_SHOWN, decoded_body, queues_view, task_view
from emulator.state import ATTEMPT_HISTORY
from tests.emulator.inproc import Harness

URL = "http://127.0.0.1:9"
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("body", "kind", "text"),
    [
        (b"", "empty", ""),
        (b'{"a":[1,"\xc3\xa9"]}', "json", '{\n  "a": [\n    1,\n    "é"\n  ]\n}'),
        (b"<script>alert(1)</script>", "text", "<script>alert(1)</script>"),
        (b"{not json", "text", "{not json"),
        (b"\xff\x00\x80", "base64", base64.b64encode(b"\xff\x00\x80").decode()),
        (b"ok\x00\x01", "base64", base64.b64encode(b"ok\x00\x01").decode()),  # control chars
        (b"a\tb\r\nc", "text", "a\tb\r\nc"),
    ],
)
def test_bodies_are_decoded_for_reading(body: bytes, kind: str, text: str) -> None:
    decoded = decoded_body(body)
    assert (decoded["kind"], decoded["text"], decoded["size"]) == (kind, text, len(body))
    assert ("shown as base64" in decoded["note"]) is (kind == "base64")


def test_a_huge_body_is_cut_with_a_note() -> None:
    decoded = decoded_body(b"x" * (BODY_SHOWN + 10))
    assert len(decoded["text"]) == BODY_SHOWN
    assert decoded["size"] == BODY_SHOWN + 10
    assert f"cut after {BODY_SHOWN}" in decoded["note"]


async def test_the_attempt_history_keeps_the_latest_failures(core: Harness) -> None:
    queue = core.create_queue(retry_config={"min_backoff": "1s", "max_backoff": "1s"})
    task = core.create_task(queue, http_request={"url": f"{URL}/status/503"})
    ts = core.emulator.queues[queue].tasks[task.name]
    await core.advance(ATTEMPT_HISTORY * 3)  # Retry-After: 2 s between attempts
    sent = core.deliverer.for_task(task.name)
    assert len(sent) > ATTEMPT_HISTORY
    assert ts.history is not None
    assert len(ts.history) == ATTEMPT_HISTORY  # bounded: the oldest are forgotten
    view = task_view(ts)
    history = view["history"]
    assert len(history) == ATTEMPT_HISTORY
    assert [a["http_status"] for a in history] == [503] * ATTEMPT_HISTORY
    assert {a["code"] for a in history} == {"UNAVAILABLE"}
    # The latest attempts, in order: the last one is the task's last_attempt.
    assert history[-1]["dispatch_time"] == view["last_attempt"]["dispatch_time"]
    assert ts.history[-1].dispatched_at == sent[-1].at
    assert ts.history[0].dispatched_at == sent[-ATTEMPT_HISTORY].at
    assert view["first_attempt"]["dispatch_time"] < history[0]["dispatch_time"]


async def test_a_task_that_succeeds_at_once_keeps_no_history(core: Harness) -> None:
    queue = core.create_queue()
    core.pause(queue)
    task = core.create_task(queue, http_request={"url": f"{URL}/flaky/1", "body": b"{}"})
    ts = core.emulator.queues[queue].tasks[task.name]
    core.resume(queue)
    await core.advance(0.5)
    assert ts.history is not None
    assert [r.http_status for r in ts.history] == [500]
    await core.advance(5)
    assert not core.exists(task.name)  # answered 200: deleted, its one failure with it
    other = core.create_task(queue, http_request={"url": f"{URL}/ok"})
    other_ts = core.emulator.queues[queue].tasks[other.name]
    await core.advance(1)
    assert not core.exists(other.name)
    assert other_ts.history is None  # nothing was made for it
    (row,) = queues_view(core.emulator)["queues"]
    assert row["attempts"] == {"INTERNAL": 1, "OK": 2}
    assert row["failures"] == 1
    assert json.dumps(row)  # JSON-ready as it is


@pytest.mark.integration
def test_an_installed_emulator_carries_the_page_and_the_node_preload(tmp_path: Path) -> None:
    """setuptools' build_py (what an install copies) of pyproject.toml's package data."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("contract", "emulator"):
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    built = tmp_path / "build"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import setuptools; setuptools.setup()",
            "-q",
            "build_py",
            "-d",
            str(built),
        ],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    page = ROOT / "emulator" / "inspector_page"
    shipped = sorted(p.name for p in (built / "emulator" / "inspector_page").iterdir())
    assert shipped == sorted(p.name for p in page.iterdir())
    assert shipped == sorted(PAGE_FILES)
    # The Node preload (emulator/README.md: NODE_OPTIONS=--require) ships beside the modules.
    assert (built / "emulator" / "redirect.cjs").read_bytes() == (
        ROOT / "emulator" / "redirect.cjs"
    ).read_bytes()


async def test_an_app_engine_task_shows_its_routing(core: Harness) -> None:
    queue = core.create_queue()
    core.pause(queue)
    task = core.create_task(
        queue,
        app_engine_http_request={
            "relative_uri": "/work?x=1",
            "app_engine_routing": {"service": "worker", "version": "v2"},
            "body": b"\x00\x01",
        },
    )
    view = task_view(core.emulator.queues[queue].tasks[task.name])
    target = view["target"]
    assert (target["kind"], target["method"], target["relative_uri"]) == (
        "app_engine",
        "POST",
        "/work?x=1",
    )
    assert target["routing"]["service"] == "worker"
    assert target["routing"]["version"] == "v2"
    assert target["routing"]["host"].endswith(".appspot.com")
    assert target["body"]["kind"] == "base64"
    assert view["request"] == "POST App Engine /work?x=1"
