"""``python -m emulator`` (or ``cloud-tasks-emulator``): the emulator's command line.

It only parses and checks flags (with messages that say how to fix them) and
hands over to :func:`emulator.server.serve`; it deliberately reads no
environment variables, so a stray ``PORT`` cannot move the emulator.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import urllib.parse
from typing import NoReturn

from contract.interpreter import exit_if_foreign
from contract.limits import DEFAULT_QUEUE_TOMBSTONE_S, DEFAULT_TOMBSTONE_S

try:
    from emulator import declarations
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


def _base_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a base URL: give http://HOST:PORT (an optional path, no query)"
        )
    return text.rstrip("/")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError("the tombstone window cannot be negative")
    return value


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every flag's help ends with its default; the epilog keeps its own line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is argparse.SUPPRESS or "%(default)" in text:
            return text
        default = action.default
        if default in (None, [], ()):
            shown = "none"
        elif default is False:
            shown = "off"
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})"


_EPILOG = """\
endpoints:
  gRPC (--port)       google.cloud.tasks.v2.CloudTasks and google.cloud.tasks.v2beta3.CloudTasks
  HTTP (--http-port)  REST API at /v2/... and /v2beta3/... (Google's paths)
                      (with --one-port, both on --port)
                      OIDC issuer: /.well-known/openid-configuration, /oauth2/v1/certs (PEM),
                      /oauth2/v3/certs (JWKS); POST /token: OAuth token endpoint for
                      service-account refreshes (emulator/redirect.py sends them here)
                      /metrics: the queue signals in Prometheus text format
admin endpoints (HTTP port, emulator only):
  GET  /emulator/v1/health                  queue, task, in-flight, dispatched and dropped counts
  GET  /emulator/v1/dropped[?queue=NAME]    tasks whose retries ran out, per queue
  POST /emulator/v1/dropped:reset           forget them
  POST /emulator/v1/tombstones:reset        free every reserved task and queue name
  GET  /emulator/v1/clock                   the emulator's time
  POST /emulator/v1/clock:advance           {"seconds": 3600} (--manual-clock only)
  POST /emulator/v1/QUEUE_NAME:runDue       attempt every due task of a queue now
inspector (HTTP port): a web page of the queues and tasks, read-only unless --inspector-actions
  GET  /inspector                           the page; /inspector/FILE its files; / redirects
  GET  /emulator/v1/inspector/session       {"actions", "token"}: what the page may do
  GET  /emulator/v1/inspector/queues        every queue: state, limits, depth, attempts, dropped
  GET  /emulator/v1/inspector/NAME          QUEUE_NAME/tasks: its tasks; TASK_NAME: one task
  POST /emulator/v1/inspector/NAME:ACTION   QUEUE_NAME:pause|resume|purge, TASK_NAME:run
                                            (--inspector-actions; X-Inspector-Token, same origin)
firebase-admin (CLOUD_TASKS_EMULATOR_HOST=the HTTP address, or --one-port's):
  POST   /projects/P/locations/L/queues/FUNCTION/tasks      enqueue (the Firebase emulator's shape)
  DELETE /projects/P/locations/L/queues/FUNCTION/tasks/ID   delete

clients find it through CLOUD_TASKS_EMULATOR_HOST=HOST:PORT (gRPC); the ready line on
stdout names both addresses. Documentation: emulator/README.md.
"""


def _declarations(files: list[str], flags: list[str]) -> tuple[declarations.Declaration, ...]:
    found: list[declarations.Declaration] = []
    for path in files:
        found.extend(declarations.load_file(path))
    found.extend(declarations.from_flag(text) for text in flags)
    declarations.check_unique(found)
    return tuple(found)


class _OneLineParser(argparse.ArgumentParser):
    """A bad flag or queue declaration is one line naming --help, exit 2: the usage
    summary argparse prints first would bury the reason (README, Running it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="cloud-tasks-emulator",
        description="A local Cloud Tasks emulator: gRPC and REST APIs (v2 and v2beta3), HTTP "
        "delivery with OIDC tokens, App Engine delivery to local hosts, retries and rate "
        "limits, optional SQLite persistence. Also runs as `python -m emulator`.",
        epilog=_EPILOG,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (both ports)")
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
        "--http-port",
        type=_port,
        default=8124,
        metavar="PORT",
        help="REST/OIDC/admin port (0: pick a free one)",
    )
    parser.add_argument(
        "--one-port",
        action="store_true",
        help="serve gRPC and HTTP both on --port, told apart by each connection's first "
        "bytes (as Google's endpoint serves both); --http-port is then unused",
    )
    parser.add_argument(
        "--data",
        metavar="FILE",
        help="SQLite file to persist queues and tasks in (in memory without it); an "
        "acknowledged write survives kill -9 of the emulator (an OS crash: see the next flag)",
    )
    parser.add_argument(
        "--fsync",
        action="store_true",
        help="with --data, fsync every commit before answering (SQLite synchronous=FULL), "
        "so acknowledged writes also survive an OS crash or power loss; slower",
    )
    parser.add_argument(
        "--queues-file",
        action="append",
        default=[],
        metavar="FILE",
        help="declare queues at start from a YAML or JSON file in the shape `gcloud tasks "
        "queues describe` prints (one queue per document, or a list); created, or set to "
        "the declared configuration if they exist (repeatable)",
    )
    parser.add_argument(
        "--queue",
        action="append",
        default=[],
        metavar="NAME[:KEY=VALUE,...]",
        help="declare one queue, e.g. projects/p/locations/l/queues/q:max-dispatches-per-"
        "second=5,max-attempts=3; KEY is one of "
        + ", ".join(declarations.FLAG_SETTINGS)
        + " (repeatable)",
    )
    parser.add_argument(
        "--tombstone-seconds",
        type=_seconds,
        default=float(DEFAULT_TOMBSTONE_S),
        metavar="SECONDS",
        help="how long a task name stays reserved after the task ran or was deleted",
    )
    parser.add_argument(
        "--queue-tombstone-seconds",
        type=_seconds,
        default=float(DEFAULT_QUEUE_TOMBSTONE_S),
        metavar="SECONDS",
        help="how long a deleted queue's name stays unusable: CreateQueue on it meanwhile "
        "answers as if it had created the queue, but GetQueue says NOT_FOUND (Google's "
        "window is up to 3 days: 259200); 0 frees the name at once",
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
        "--functions-url",
        type=_base_url,
        metavar="URL",
        help="where firebase-admin's task-queue tasks without a URL go: URL/PROJECT/"
        "LOCATION/FUNCTION, the Firebase Functions emulator's path, e.g. "
        "http://127.0.0.1:5001. Without it such an enqueue is INVALID_ARGUMENT",
    )
    parser.add_argument(
        "--manual-clock",
        action="store_true",
        help="time stands still from start-up and moves only through "
        "POST /emulator/v1/clock:advance (schedule times, backoffs, deadlines, rates and "
        "tombstones follow it); for tests",
    )
    parser.add_argument(
        "--inspector-actions",
        action="store_true",
        help="let the inspector page (http://HOST:HTTP_PORT/inspector) pause, resume and "
        "purge queues and run tasks; each action needs the page's per-process token and is "
        "refused from any other origin. Without it the page is read-only",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,  # --log-level debug works too
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR; logs go to stderr",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.fsync and not args.data:
        # Silently ignoring it would promise a durability an in-memory emulator lacks.
        parser.error("--fsync needs --data FILE (without --data nothing is written)")
    try:
        app_engine_hosts = AppEngineHosts.parse(args.app_engine_host)
        queues = _declarations(args.queues_file, args.queue)
    except ValueError as exc:  # DeclarationError included
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
        fsync=args.fsync,
        tombstone_seconds=args.tombstone_seconds,
        queue_tombstone_seconds=args.queue_tombstone_seconds,
        allow_hosts=tuple(args.allow_host),
        app_engine_hosts=app_engine_hosts,
        manual_clock=args.manual_clock,
        queues=queues,
        one_port=args.one_port,
        functions_url=args.functions_url,
        inspector_actions=args.inspector_actions,
    )


def main(argv: list[str] | None = None) -> None:
    """The console command ``cloud-tasks-emulator`` (pyproject.toml ``[project.scripts]``)."""
    settings = parse_args(argv)
    try:
        asyncio.run(serve(settings))
    except ValueError as exc:  # e.g. an unusable --data file
        raise SystemExit(f"cloud-tasks-emulator: {exc}") from None


if __name__ == "__main__":
    main()
