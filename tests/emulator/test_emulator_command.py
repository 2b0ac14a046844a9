"""The installable command: ``cloud-tasks-emulator`` is declared and is ``main``;
``--help`` shows every flag with its default and every endpoint the HTTP port serves."""

from __future__ import annotations

import argparse
import importlib
import re
import tomllib
from pathlib import Path

import pytest
from starlette.routing import Route

from emulator.__main__ import build_parser, main, parse_args
from emulator.core import Emulator
from emulator.rest_api import build_app

ROOT = Path(__file__).resolve().parents[2]


def _help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_pyproject_declares_the_console_command() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    target = project["scripts"]["cloud-tasks-emulator"]
    module, _, attribute = target.partition(":")
    assert getattr(importlib.import_module(module), attribute) is main


def test_help_shows_every_flag_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys)
    assert text.startswith("usage: cloud-tasks-emulator")
    options = " ".join(text.split("options:", 1)[1].split("endpoints:", 1)[0].split())
    flags = [
        a.option_strings[-1]
        for a in build_parser()._actions
        if not isinstance(a, argparse._HelpAction)
    ]
    assert len(flags) >= 11
    for this, after in zip(flags, [*flags[1:], None], strict=True):
        section = options.split(this + " ", 1)[1]
        if after is not None:
            section = section.split(after + " ", 1)[0]
        assert "(default: " in section, f"{this} does not show its default"
    assert "(default: 8123)" in options
    assert "(default: 3600.0)" in options


def test_help_names_every_endpoint_of_the_http_port(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys)
    app = build_app(Emulator())
    paths = [r.path for r in app.routes if isinstance(r, Route)]
    assert paths, "no routes found: the check is broken"
    for path in paths:
        shown = re.sub(r"\{(queue|path|name):path\}|\{file\}", "", path)
        shown = shown.replace("/emulator/v1/:runDue", "/emulator/v1/QUEUE_NAME:runDue")
        assert shown.rstrip("/") in text, f"--help does not name {path}"


def test_fsync_without_data_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(["--fsync"])
    assert exc.value.code == 2
    assert "--fsync needs --data FILE" in capsys.readouterr().err
    assert parse_args(["--fsync", "--data", "x.db"]).fsync


def test_log_level_takes_any_case() -> None:
    assert build_parser().parse_args(["--log-level", "debug"]).log_level == "DEBUG"
    assert build_parser().parse_args(["--log-level", "Error"]).log_level == "ERROR"


@pytest.mark.parametrize(
    "argv",
    [["--bogus"], ["--queue", "projects/p/locations/l/queues/q:rate=5"], ["--port", "x"]],
)
def test_a_bad_flag_is_one_line_naming_help(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # no usage summary before it
    assert err.startswith("cloud-tasks-emulator: error: ")
    assert err.endswith("(see cloud-tasks-emulator --help)\n")
