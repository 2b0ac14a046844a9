"""What an adversarial review of the worker asked for: it fails closed, refuses
oversized or slow requests early, and keeps token material out of its log.

Settings that must stop the worker are in test_service_units.py (`TestSettings`);
here are the behaviours of a running worker, in-process where HTTP framing does
not matter and as a real `python -m service` process where it does (header size
and read timeouts live in the HTTP server, below the app).
"""

from __future__ import annotations

from pathlib import Path

from service.app import create_app
from service.config import Settings
from tests.service.asgi import AppServer, capture_logs


def test_disabling_the_check_on_purpose_logs_a_loud_warning(tmp_path: Path) -> None:
    settings = Settings.from_env({"TASKS_AUTH_DISABLED": "true"})
    with capture_logs() as logs, AppServer(create_app(settings)):
        entry = logs.wait_for_log(lambda e: "TASKS_AUTH_DISABLED" in e["message"])
    assert entry["severity"] == "WARNING"
    assert entry["message"].startswith("TOKEN CHECK DISABLED")
    assert entry["host"] == "0.0.0.0"


def test_without_the_check_the_log_says_loopback_only(tmp_path: Path) -> None:
    settings = Settings.from_env({"HOST": "127.0.0.1"})
    with capture_logs() as logs, AppServer(create_app(settings)):
        entry = logs.wait_for_log(lambda e: "token check off" in e["message"])
    assert entry["severity"] == "WARNING"
    assert "serving 127.0.0.1 only" in entry["message"]
