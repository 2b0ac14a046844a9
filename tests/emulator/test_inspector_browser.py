"""The inspector page in a real headless browser: Debian's chromium driven by playwright.

Queues and tasks are made with the official client (a JSON body, a binary one,
and one holding markup and script to prove it stays text); the page is read as a
user sees it (visible text), the Pause button is clicked and GetQueue confirms
it, and a screenshot is taken while the page text is checked for the queue, the
body and the attempt status (``INSPECTOR_SCREENSHOT=1`` makes it docs/inspector.png).
Never a downloaded browser: ``make browser``
installs Debian's chromium, and without it these tests fail saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import tasks_v2
from playwright.sync_api import Browser, Page, expect, sync_playwright

from emulator.testing import EmulatorProcess
from tests.emulator.support import Target

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PARENT = "projects/browser/locations/us-central1"
MARKUP = '<img src=x onerror="window.injected=1"><script>window.injected=2</script>'
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WAIT_MS = 20_000  # for any element or text: the machine may be busy with other tests
expect.set_options(timeout=WAIT_MS)
# `INSPECTOR_SCREENSHOT=1 pytest tests/emulator/test_inspector_browser.py` refreshes it.
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "inspector.png"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (Debian's chromium)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield opened
    context.close()
    assert errors == [], f"the page logged errors: {errors}"


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _make_tasks(client: Any, queue: str, target: Target) -> dict[str, str]:
    later = {"seconds": int(time.time()) + 3600}
    specs: dict[str, dict[str, Any]] = {
        "welcome": {
            "http_request": {
                "url": target.url("/status/503"),  # answered 503, retried 2 s later
                "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"to": "ada@example.com", "template": "welcome"}).encode(),
            }
        },
        "blob": {
            "http_request": {"url": target.url("/blob"), "body": b"\xff\xfe\x00\x01binary"},
            "schedule_time": later,
        },
        "markup": {
            "http_request": {"url": target.url("/markup"), "body": MARKUP.encode()},
            "schedule_time": later,
        },
    }
    names = {}
    for task_id, spec in specs.items():
        name = f"{queue}/tasks/{task_id}"
        client.create_task(parent=queue, task={"name": name, **spec})
        names[task_id] = name
    return names


def test_the_page_shows_queues_tasks_and_pauses_a_queue(
    page: Page, target: Target, tmp_path: Path
) -> None:
    with EmulatorProcess(extra_args=("--inspector-actions",)) as emu:
        client = emu.client()
        queue = f"{PARENT}/queues/emails"
        client.create_queue(
            parent=PARENT,
            queue={"name": queue, "rate_limits": {"max_dispatches_per_second": 5}},
        )
        client.create_queue(parent=PARENT, queue={"name": f"{PARENT}/queues/reports"})
        names = _make_tasks(client, queue, target)
        deadline = time.monotonic() + 15
        while client.get_task(name=names["welcome"]).response_count < 1:
            assert time.monotonic() < deadline, "the first attempt was never answered"
            time.sleep(0.05)

        page.goto(f"{emu.http_url}/inspector")
        expect(page.locator("#mode")).to_have_text("actions enabled")
        rows = page.locator("#queue-table tbody tr")
        expect(rows).to_have_count(2)
        emails = page.locator("#queue-table tbody tr", has_text="emails")
        cells = emails.locator("td").all_inner_texts()
        assert cells[:6] == ["emails", "browser / us-central1", "RUNNING", "5", "1000", "3"]

        emails.get_by_role("button", name="emails").click()
        expect(page.locator("#tasks-title")).to_have_text("Tasks of emails (RUNNING)")
        expect(page.locator("#task-table tbody tr")).to_have_count(3)
        welcome_row = page.locator("#task-table tbody tr", has_text="welcome")
        expect(welcome_row).to_contain_text("UNAVAILABLE: HTTP 503 Service Unavailable")

        # Markup in a body is shown as the characters it is, and nothing runs.
        page.get_by_role("button", name="markup").click()
        expect(page.locator("#task-title")).to_have_text("Task markup")
        expect(page.locator("#task-body")).to_have_text(MARKUP)
        assert page.locator("#task-body *").count() == 0  # text only, no elements
        assert page.evaluate("window.injected") is None
        assert page.locator("script").count() == 1  # the page's own file only

        page.get_by_role("button", name="blob").click()
        expect(page.locator("#task-title")).to_have_text("Task blob")
        expect(page.locator("#body-kind")).to_have_text("(base64, 10 bytes)")
        expect(page.locator("#body-note")).to_contain_text("shown as base64")

        page.get_by_role("button", name="welcome").click()
        expect(page.locator("#task-title")).to_have_text("Task welcome")
        expect(page.locator("#task-body")).to_have_text(
            '{\n  "to": "ada@example.com",\n  "template": "welcome"\n}'
        )
        expect(page.locator("#task-headers")).to_contain_text("application/json")
        first = page.locator("#task-attempts tbody tr").first
        expect(first).to_contain_text("503")
        expect(first).to_contain_text("HTTP 503 Service Unavailable")

        emails.get_by_role("button", name="Pause").click()
        expect(emails.locator(".state")).to_have_text("PAUSED")
        expect(emails.get_by_role("button", name="Resume")).to_be_visible()
        assert client.get_queue(name=queue).state == tasks_v2.Queue.State.PAUSED

        # The screenshot, and what the page says at that moment.
        text = page.inner_text("body")
        shot = page.screenshot(path=str(tmp_path / "inspector.png"), full_page=True)
        for expected in (
            "emails",
            "PAUSED",
            "ada@example.com",
            "HTTP 503 Service Unavailable",
            "emulator time ",
        ):
            assert expected in text, expected
        assert (tmp_path / "inspector.png").read_bytes() == shot
        width, height = _png_size(shot)
        assert (width, height >= 900) == (1280, True)
        assert len(shot) > 20_000  # a rendered page, not a blank one
        if os.environ.get("INSPECTOR_SCREENSHOT") == "1":
            shutil.copyfile(tmp_path / "inspector.png", DOCS_SCREENSHOT)
        page.goto("about:blank")  # leave before the emulator stops: no refresh hits a closed port


def test_a_read_only_page_offers_no_actions(page: Page) -> None:
    with EmulatorProcess() as emu:
        emu.client().create_queue(parent=PARENT, queue={"name": f"{PARENT}/queues/quiet"})
        page.goto(f"{emu.http_url}/")  # redirected to /inspector
        expect(page.locator("#mode")).to_have_text("read-only")
        row = page.locator("#queue-table tbody tr", has_text="quiet")
        expect(row).to_contain_text("RUNNING")
        expect(row).to_contain_text("read-only")
        assert page.get_by_role("button", name="Pause").count() == 0
        assert page.url == f"{emu.http_url}/inspector"
        page.goto("about:blank")
