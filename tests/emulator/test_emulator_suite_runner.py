"""scripts/run_sample_suites.py's own parts (the suites it runs are not in this repository,
so CI cannot run them): reading both runners' reports, the key file, the queues
the suites expect, and its refusal of a wrong checkout path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from google.oauth2 import service_account

from scripts import run_sample_suites as runner

SCRIPT = Path(runner.__file__)

PYTEST_REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="3">
<testcase classname="a_test" name="test_ok" time="0.1"/>
<testcase classname="a_test" name="test_bad" time="0.1">
  <failure message="AssertionError: assert 1 == 2">long traceback</failure></testcase>
<testcase classname="a_test" name="test_skip" time="0"><skipped message="no"/></testcase>
</testsuite></testsuites>"""

# What mocha's xunit reporter writes: the message is the failure's text, not an attribute.
MOCHA_REPORT = """<testsuite name="Mocha Tests" tests="2" failures="1" errors="1" skipped="0">
<testcase classname="Cloud Task Sample Tests" name="should create a queue" time="0.3"/>
<testcase classname="Cloud Task Sample Tests" name="should delete a queue" time="0.2">
<failure>Command failed: node deleteQueue p q
14 UNAVAILABLE: No connection established</failure></testcase>
</testsuite>"""


def test_reports_of_both_runners_are_counted_with_each_failures_first_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "py.xml").write_text(PYTEST_REPORT)
    (tmp_path / "node.xml").write_text(MOCHA_REPORT)
    py = runner._junit(tmp_path / "py.xml", "py")
    assert (py.ran, py.passed, py.failed, py.skipped) == (3, 1, 1, 1)
    assert py.failures == [("test_bad", "AssertionError: assert 1 == 2")]
    node = runner._junit(tmp_path / "node.xml", "node")
    assert (node.ran, node.passed, node.failed) == (2, 1, 1)
    assert node.failures == [("should delete a queue", "Command failed: node deleteQueue p q")]
    missing = runner._junit(tmp_path / "absent.xml", "gone")
    assert missing.ran == 0
    assert "did not start" in missing.note
    table = runner._table([py, node, missing])
    assert table.splitlines()[-1] == "2 passed, 2 failed, 1 skipped"
    assert "FAILED should delete a queue: Command failed" in table
    empty = runner.Result(suite="empty", commit="-")
    assert "no test ran" in runner._table([empty])


def test_key_file_is_a_google_shaped_service_account_key(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    runner._write_key_file(path)
    info = json.loads(path.read_text())
    assert info["token_uri"] == "https://oauth2.googleapis.com/token"  # redirected, not edited
    credentials = service_account.Credentials.from_service_account_info(info)  # type: ignore[no-untyped-call]
    assert credentials.service_account_email == runner.SERVICE_ACCOUNT
    assert path.stat().st_mode & 0o077 == 0


def test_queues_the_suites_expect_are_declared(tmp_path: Path) -> None:
    path = tmp_path / "queues.json"
    runner._queues_file(path, 4321)
    queues = {q["name"]: q for q in json.loads(path.read_text())}
    parent = f"projects/{runner.PROJECT}/locations/us-central1/queues"
    for queue_id in ("my-queue", "my-appengine-queue", "default", "testTaskQueue"):
        assert f"{parent}/{queue_id}" in queues
    # firebase-admin's emulator mode uses its own project id.
    assert "projects/fake-project-id/locations/us-central1/queues/testTaskQueue" in queues
    override = queues[f"{parent}/testTaskQueue"]["httpTarget"]["uriOverride"]
    assert (override["host"], override["port"]) == ("127.0.0.1", "4321")  # loopback only


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no suite selected"),
        (
            ["--python-docs-samples", "/nonexistent/pds"],
            "does not exist: pass the repository's root",
        ),
    ],
)
def test_bad_arguments_are_one_clear_line(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2  # the docstring: 2 on bad arguments or a broken setup
    assert message in done.stderr
    assert "Traceback" not in done.stderr
