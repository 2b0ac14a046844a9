"""Loading stack outputs: from a mapping, a file, or the Pulumi CLI; every bad case named."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from contract.names import (
    LOCAL_OUTPUT_KEYS,
    OUTPUT_AUDIENCE,
    OUTPUT_EMULATOR_HOST,
    OUTPUT_INVOKER_EMAIL,
    OUTPUT_QUEUE,
    OUTPUT_SERVICE_URL,
    STACK_OUTPUT_KEYS,
)
from enqueue import OutputsError, StackOutputs, UnknownOutputsWarning, load_outputs

GOOD: dict[str, str] = {
    "project": "demo-project",
    "location": "europe-west1",
    "queue": "projects/demo-project/locations/europe-west1/queues/tasks-1a2b",
    "service_url": "https://worker-abc-ew.a.run.app",
    "audience": "https://worker-abc-ew.a.run.app",
    "invoker_email": "tasks-invoker@demo-project.iam.gserviceaccount.com",
}


def with_(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = dict(GOOD)
    data.update(changes)
    return data


class TestFromMapping:
    def test_reads_every_key(self) -> None:
        outputs = StackOutputs.from_mapping(GOOD)
        assert outputs.queue == GOOD[OUTPUT_QUEUE]
        assert outputs.audience == GOOD[OUTPUT_AUDIENCE]
        assert outputs.invoker_email == GOOD[OUTPUT_INVOKER_EMAIL]
        assert outputs.emulator_host is None
        assert outputs.task_path("abc") == GOOD[OUTPUT_QUEUE] + "/tasks/abc"

    def test_local_keys(self) -> None:
        outputs = StackOutputs.from_mapping(
            with_(emulator_host="127.0.0.1:8123", emulator_url="http://127.0.0.1:8124")
        )
        assert outputs.emulator_host == "127.0.0.1:8123"
        assert outputs.emulator_url == "http://127.0.0.1:8124"

    def test_keys_come_from_contract(self) -> None:
        assert set(GOOD) == set(STACK_OUTPUT_KEYS)
        assert OUTPUT_EMULATOR_HOST in LOCAL_OUTPUT_KEYS

    def test_every_missing_key_is_named(self) -> None:
        data = {k: v for k, v in GOOD.items() if k not in (OUTPUT_AUDIENCE, OUTPUT_SERVICE_URL)}
        with pytest.raises(OutputsError, match="missing output\\(s\\) service_url, audience"):
            StackOutputs.from_mapping(data)

    def test_unknown_keys_are_named_in_a_warning(self) -> None:
        with pytest.warns(UnknownOutputsWarning, match="ignoring unknown output\\(s\\) extra, x"):
            StackOutputs.from_mapping(with_(extra="1", x="2"))

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"queue": "tasks-1a2b"}, "must be the full queue path"),
            ({"queue": "projects/other/locations/europe-west1/queues/q"}, "does not belong"),
            ({"queue": "projects/demo-project/locations/europe-west1/queues/bad_id"}, "full queue"),
            ({"service_url": "worker.example.com"}, "service_url must be an http\\(s\\) URL"),
            ({"service_url": "ftp://worker.example.com"}, "service_url must be an http\\(s\\)"),
            ({"service_url": "https://w.example.com/?a=1"}, "must not carry a query"),
            ({"service_url": "https://worker:99999"}, "output service_url has an invalid port"),
            ({"service_url": "https://worker:0"}, "output service_url has an invalid port"),
            ({"service_url": "https://worker:abc"}, "output service_url has an invalid port"),
            ({"service_url": "https://work er.app"}, "output service_url must not contain spaces"),
            ({"service_url": "http://:80"}, "output service_url has no valid host name"),
            ({"service_url": "https://a..b.app"}, "output service_url has no valid host name"),
            ({"service_url": "http://[zz]:1"}, "output service_url must be an http\\(s\\) URL"),
            ({"emulator_url": "http://127.0.0.1:70000"}, "output emulator_url has an invalid port"),
            ({"invoker_email": "not-an-email"}, "invoker_email must be a service account email"),
            ({"audience": ""}, "audience must be a non-empty string"),
            ({"project": 42}, "project must be a non-empty string"),
            ({"emulator_host": "localhost"}, "emulator_host must be HOST:PORT"),
            ({"emulator_url": "127.0.0.1:9"}, "emulator_url must be an http\\(s\\) URL"),
        ],
    )
    def test_bad_values_are_explained(self, changes: dict[str, Any], message: str) -> None:
        with pytest.raises(OutputsError, match=message):
            StackOutputs.from_mapping(with_(**changes))

    @pytest.mark.parametrize(
        "url", ["https://worker-abc-uc.a.run.app/", "http://127.0.0.1:8080", "http://[::1]:9"]
    )
    def test_good_urls_pass(self, url: str) -> None:
        assert StackOutputs.from_mapping(with_(service_url=url)).service_url == url

    def test_not_an_object(self) -> None:
        with pytest.raises(OutputsError, match="expected a JSON object"):
            StackOutputs.from_mapping([1, 2])  # type: ignore[arg-type]


class TestFromFile:
    def test_reads_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "outputs.json"
        path.write_text(json.dumps(GOOD))
        assert load_outputs(path).queue == GOOD[OUTPUT_QUEUE]
        assert load_outputs(str(path)).project == GOOD["project"]

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(OutputsError, match="does not exist: bring the local stack up"):
            StackOutputs.from_file(tmp_path / "nope.json")

    def test_not_json(self, tmp_path: Path) -> None:
        path = tmp_path / "outputs.json"
        path.write_text("{\n  'project': 1}")
        with pytest.raises(OutputsError, match="not valid JSON \\(line 2"):
            StackOutputs.from_file(path)

    def test_utf16_file_is_named_as_such(self, tmp_path: Path) -> None:
        path = tmp_path / "outputs.json"
        path.write_bytes(json.dumps(GOOD).encode("utf-16"))  # PowerShell 5's `>`
        with pytest.raises(OutputsError, match=r"is UTF-16, not UTF-8.*must be UTF-8 JSON"):
            load_outputs(path)
        path.write_bytes(json.dumps(GOOD).encode("utf-16-le"))  # no byte order mark
        with pytest.raises(OutputsError, match="is UTF-16, not UTF-8"):
            load_outputs(path)

    def test_not_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "outputs.json"
        path.write_bytes(b'{"project": "\xff"}')
        with pytest.raises(OutputsError, match="is not valid UTF-8 \\(byte 14\\)"):
            load_outputs(path)

    def test_utf8_byte_order_mark_is_accepted(self, tmp_path: Path) -> None:
        path = tmp_path / "outputs.json"
        path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode())
        assert load_outputs(path).queue == GOOD[OUTPUT_QUEUE]

    def test_source_named_in_errors(self, tmp_path: Path) -> None:
        path = tmp_path / "outputs.json"
        path.write_text(json.dumps(with_(audience=None)))
        with pytest.raises(OutputsError, match=f"{path}: output audience"):
            StackOutputs.from_file(path)


class TestFromStack:
    """`pulumi` cannot be installed here, so the CLI is stood in for by a script
    on PATH that records its arguments and prints what the real one prints."""

    @staticmethod
    def fake_pulumi(tmp_path: Path, body: str) -> dict[str, str]:
        script = tmp_path / "bin" / "pulumi"
        script.parent.mkdir()
        script.write_text(f"#!{sys.executable}\nimport sys, json\n{body}\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        return {"PATH": str(script.parent)}

    def test_runs_stack_output_json(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        argv_file = tmp_path / "argv.json"
        env = self.fake_pulumi(
            tmp_path,
            f"open({str(argv_file)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
            f"print(json.dumps({GOOD!r}))",
        )
        monkeypatch.setenv("PATH", env["PATH"])
        outputs = load_outputs(stack="dev")
        assert outputs.queue == GOOD[OUTPUT_QUEUE]
        assert json.loads(argv_file.read_text()) == ["stack", "output", "--json", "--stack", "dev"]

    def test_cli_failure_is_reported(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        env = self.fake_pulumi(
            tmp_path,
            "print(\"error: no stack named 'nope' found\", file=sys.stderr)\nsys.exit(255)",
        )
        monkeypatch.setenv("PATH", env["PATH"])
        with pytest.raises(OutputsError, match="failed \\(exit 255\\): error: no stack named"):
            load_outputs(stack="nope")

    def test_missing_cli(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PATH", str(tmp_path))
        with pytest.raises(OutputsError, match=r"Pulumi CLI \(pulumi\) is not on PATH.*--outputs"):
            load_outputs(stack="dev")

    def test_exactly_one_source(self) -> None:
        with pytest.raises(OutputsError, match="exactly one source"):
            load_outputs()
        with pytest.raises(OutputsError, match="exactly one source"):
            load_outputs(GOOD, stack="dev")


def test_the_dispatch_deadline_output_is_read_and_checked() -> None:
    good = {**GOOD, "dispatch_deadline": "900s"}
    assert StackOutputs.from_mapping(good).dispatch_deadline_s == 900
    assert StackOutputs.from_mapping(GOOD).dispatch_deadline_s is None  # an older stack
    for bad in ("10m", "5s", "1801s", "soon"):
        with pytest.raises(OutputsError, match="output dispatch_deadline must be whole seconds"):
            StackOutputs.from_mapping({**GOOD, "dispatch_deadline": bad})
