"""``python -m emulator``: command-line entry of the local Cloud Tasks emulator.

It only parses and checks flags (with messages that say how to fix them) and
hands over to :func:`emulator.server.serve`; it deliberately reads no
environment variables, so a stray ``PORT`` cannot move the emulator.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from contract.interpreter import exit_if_foreign
from contract.limits import DEFAULT_TOMBSTONE_S

try:
    from emulator.appengine import AppEngineHosts
    from emulator.server import Settings, serve
except ModuleNotFoundError as _missing:  # a fresh shell's `python` is not the project's
    exit_if_foreign("python -m emulator", _missing, __name__)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not in 0..65535 (0 picks a free port)")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError("the tombstone window cannot be negative")
    return value


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m emulator",
        description="A local Cloud Tasks emulator: gRPC and REST v2 API, HTTP delivery "
        "with OIDC tokens, App Engine delivery to local hosts, retries and rate limits, "
        "optional SQLite persistence.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer HTTP requests addressed to this host name (repeatable); "
        "by default only 127.0.0.1, ::1, localhost and --host are accepted",
    )
    parser.add_argument("--port", type=_port, default=8123, help="gRPC port (0: pick a free one)")
    parser.add_argument(
        "--http-port", type=_port, default=8124, help="REST/OIDC/admin port (0: pick a free one)"
    )
    parser.add_argument("--data", help="SQLite file to persist queues and tasks in")
    parser.add_argument(
        "--tombstone-seconds",
        type=_seconds,
        default=float(DEFAULT_TOMBSTONE_S),
        help="how long a task name stays reserved after the task ran or was deleted "
        f"(default {DEFAULT_TOMBSTONE_S})",
    )
    parser.add_argument(
        "--app-engine-host",
        action="append",
        default=[],
        metavar="[SERVICE=]URL",
        help="base URL App Engine tasks are delivered to (relative_uri appended), e.g. "
        "http://127.0.0.1:8080; SERVICE=URL for the tasks routed to that service "
        "(repeatable). Without one, App Engine tasks are accepted but their attempts fail",
    )
    parser.add_argument(
        "--manual-clock",
        action="store_true",
        help="time stands still from start-up and moves only through "
        "POST /emulator/v1/clock:advance (schedule times, backoffs, deadlines, rates and "
        "tombstones follow it); for tests",
    )
    parser.add_argument(
        "--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    args = parser.parse_args(argv)
    try:
        app_engine_hosts = AppEngineHosts.parse(args.app_engine_host)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    return Settings(
        host=args.host,
        port=args.port,
        http_port=args.http_port,
        data=args.data,
        tombstone_seconds=args.tombstone_seconds,
        allow_hosts=tuple(args.allow_host),
        app_engine_hosts=app_engine_hosts,
        manual_clock=args.manual_clock,
    )


def main(argv: list[str] | None = None) -> None:
    settings = parse_args(argv)
    try:
        asyncio.run(serve(settings))
    except ValueError as exc:  # e.g. an unusable --data file
        raise SystemExit(f"cloud-tasks-emulator: {exc}") from None


if __name__ == "__main__":
    main()
