"""Queues declared at start (emulator/declarations.py): files in the shape
``gcloud tasks queues describe`` prints, ``--queue`` flags, and their application
(in-process, then through a real process restarted on the same ``--data``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from google.cloud import tasks_v2

from emulator import declarations
from emulator.__main__ import parse_args
from emulator.declarations import DeclarationError
from emulator.testing import EmulatorProcess
from tests.emulator.inproc import Harness

ROOT = Path(__file__).resolve().parents[2]
Q = "projects/p/locations/us-central1/queues"
# What `gcloud tasks queues describe` prints for a queue with an HTTP target.
DESCRIBED = f"""\
appEngineRoutingOverride:
  service: worker
httpTarget:
  httpMethod: POST
  uriOverride:
    host: 127.0.0.1
    port: '8080'
    scheme: HTTP
name: {Q}/described
purgeTime: '2026-01-01T00:00:00.000000Z'
rateLimits:
  maxBurstSize: 100
  maxConcurrentDispatches: 20
  maxDispatchesPerSecond: 7.0
retryConfig:
  maxAttempts: 5
  maxBackoff: 60s
  maxDoublings: 3
  minBackoff: 1s
stackdriverLoggingConfig:
  samplingRatio: 0.5
state: PAUSED
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_describe_output_is_read_as_it_is(tmp_path: Path) -> None:
    [d] = declarations.load_file(_write(tmp_path, "q.yaml", DESCRIBED))
    assert d.name == f"{Q}/described"
    assert not d.beta
    assert d.state == tasks_v2.Queue.State.PAUSED
    assert d.queue.rate_limits.max_dispatches_per_second == 7
    assert d.queue.retry_config.max_backoff.seconds == 60
    assert d.queue.http_target.uri_override.host == "127.0.0.1"
    assert not d.queue.HasField("purge_time")  # output only: ignored


def test_the_readme_example_is_read(tmp_path: Path) -> None:
    readme = (ROOT / "emulator" / "README.md").read_text()
    [example] = [
        block.split("```", 1)[0]
        for block in readme.split("```yaml\n")
        if block.startswith("# queues.yaml")
    ]
    found = declarations.load_file(_write(tmp_path, "queues.yaml", example))
    assert [d.state for d in found] == [tasks_v2.Queue.State.RUNNING, tasks_v2.Queue.State.PAUSED]
    assert found[1].queue.http_target.uri_override.port == 8080


def test_several_documents_lists_and_json(tmp_path: Path) -> None:
    yaml_text = f"name: {Q}/a\n---\n- name: {Q}/b\n- name: {Q}/c\n  state: RUNNING\n"
    names = [d.name for d in declarations.load_file(_write(tmp_path, "qs.yaml", yaml_text))]
    assert names == [f"{Q}/a", f"{Q}/b", f"{Q}/c"]
    json_text = json.dumps([{"name": f"{Q}/j", "rateLimits": {"maxDispatchesPerSecond": 2}}])
    [j] = declarations.load_file(_write(tmp_path, "qs.json", json_text))
    assert j.queue.rate_limits.max_dispatches_per_second == 2


def test_the_v2beta3_shape_is_recognised(tmp_path: Path) -> None:
    text = (
        f"name: {Q}/beta\ntype: PUSH\n"
        "appEngineHttpQueue:\n  appEngineRoutingOverride:\n    service: s\n"
    )
    [d] = declarations.load_file(_write(tmp_path, "b.yaml", text))
    assert d.beta
    assert d.queue.app_engine_http_queue.app_engine_routing_override.service == "s"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"name: {Q}/x\nrateLimit: {{}}\n", "rateLimit"),
        (f"name: {Q}/x\nstate: DISABLED\n", "RUNNING or PAUSED"),
        ("rateLimits: {}\n", "has no name"),
        ("name: nope\n", "projects/PROJECT_ID/locations/LOCATION_ID/queues/QUEUE_ID"),
        ("name: [unclosed\n", r"not valid YAML \(line 2: expected ',' or ']'"),
        ("- 3\n", "expected a queue"),
        ("", "declares no queue"),
    ],
)
def test_bad_files_say_where_and_what(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, "bad.yaml", text)
    with pytest.raises(DeclarationError, match=message) as info:
        declarations.load_file(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_flags_use_gcloud_setting_names() -> None:
    d = declarations.from_flag(
        f"{Q}/f:max-dispatches-per-second=2.5,max_concurrent_dispatches=3,max-attempts=4,"
        "min-backoff=2s,max-backoff=1m,max-retry-duration=1h,max-doublings=2,"
        "log-sampling-ratio=0.25,state=paused"
    )
    assert d.queue.rate_limits.max_dispatches_per_second == 2.5
    assert d.queue.rate_limits.max_concurrent_dispatches == 3
    assert d.queue.retry_config.max_attempts == 4
    assert d.queue.retry_config.max_backoff.seconds == 60
    assert d.queue.retry_config.max_retry_duration.seconds == 3600
    assert d.queue.stackdriver_logging_config.sampling_ratio == 0.25
    assert d.state == tasks_v2.Queue.State.PAUSED
    assert declarations.from_flag(f"{Q}/plain").state is None


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (f"{Q}/f:speed=3", "unknown setting 'speed'"),
        (f"{Q}/f:max-attempts", "is not KEY=VALUE"),
        (f"{Q}/f:max-attempts=many", "max-attempts='many' is not valid"),
        (f"{Q}/f:min-backoff=soon", "min-backoff='soon' is not valid"),
        ("queue-only", "Invalid queue name"),
    ],
)
def test_bad_flags_are_one_line_errors(flag: str, message: str) -> None:
    with pytest.raises(DeclarationError, match=message):
        declarations.from_flag(flag)


def test_a_queue_declared_twice_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "q.yaml", f"name: {Q}/twice\n")
    with pytest.raises(SystemExit) as info:
        parse_args(["--queues-file", str(path), "--queue", f"{Q}/twice"])
    assert info.value.code == 2
    assert "declared twice" in capsys.readouterr().err


async def test_apply_creates_then_sets_exactly_the_declaration(
    core: Harness, tmp_path: Path
) -> None:
    emulator = core.emulator
    [d] = declarations.load_file(_write(tmp_path, "q.yaml", DESCRIBED))
    assert declarations.apply(emulator, [d]) == {d.name: "created"}
    q = emulator.queues[d.name].pb
    assert q.state == tasks_v2.Queue.State.PAUSED
    assert q.rate_limits.max_burst_size == 7  # derived by the core, not taken from the file
    assert q.app_engine_routing_override.service == "worker"
    # A later declaration wins whole: what it leaves out returns to Google's defaults.
    again = declarations.from_flag(f"{d.name}:max-attempts=2,state=RUNNING")
    assert declarations.apply(emulator, [again]) == {d.name: "updated"}
    q = emulator.queues[d.name].pb
    assert q.retry_config.max_attempts == 2
    assert q.rate_limits.max_dispatches_per_second == 500
    assert not q.HasField("http_target")
    assert q.state == tasks_v2.Queue.State.RUNNING
    # Without a state, the state is left as it is.
    emulator.pause_queue(tasks_v2.PauseQueueRequest.pb()(name=d.name))
    declarations.apply(emulator, [declarations.from_flag(d.name)])
    assert emulator.queues[d.name].pb.state == tasks_v2.Queue.State.PAUSED


async def test_apply_reports_what_the_core_refuses(core: Harness) -> None:
    too_fast = declarations.from_flag(f"{Q}/fast:max-dispatches-per-second=1e6")
    with pytest.raises(DeclarationError, match=r"--queue .*/fast.*max_dispatches_per_second"):
        declarations.apply(core.emulator, [too_fast])


async def test_a_v2beta3_declaration_is_applied(core: Harness) -> None:
    beta = declarations.from_document(
        {"name": f"{Q}/b3", "type": "PUSH", "tombstoneTtl": "3600s"}, "test"
    )
    assert declarations.apply(core.emulator, [beta]) == {f"{Q}/b3": "created"}
    pull = declarations.from_document({"name": f"{Q}/pull", "type": "PULL"}, "test")
    with pytest.raises(DeclarationError, match="test: Pull queues are not emulated"):
        declarations.apply(core.emulator, [pull])


def test_restart_with_data_is_idempotent(tmp_path: Path) -> None:
    queues = _write(tmp_path, "queues.yaml", DESCRIBED)
    data = tmp_path / "tasks.db"
    flag = f"{Q}/flagged:max-attempts=3"
    args = ("--queues-file", str(queues), "--queue", flag)
    with EmulatorProcess(data, extra_args=args) as emu:
        client = emu.client()
        assert client.get_queue(name=f"{Q}/described").state == tasks_v2.Queue.State.PAUSED
        assert client.get_queue(name=f"{Q}/flagged").retry_config.max_attempts == 3
        task = client.create_task(
            parent=f"{Q}/described", task={"http_request": {"url": "http://127.0.0.1:9/"}}
        )
        client.create_queue(parent=Q.rsplit("/", 1)[0], queue={"name": f"{Q}/undeclared"})
        emu.restart()
        client = emu.client()
        # Same declarations: no ALREADY_EXISTS, tasks and undeclared queues kept.
        assert client.get_task(name=task.name).name == task.name
        assert client.get_queue(name=f"{Q}/undeclared").name == f"{Q}/undeclared"
        assert client.get_queue(name=f"{Q}/flagged").retry_config.max_attempts == 3


def test_a_refused_declaration_stops_start_up_with_its_source(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "emulator",
            "--port",
            "0",
            "--http-port",
            "0",
            "--queue",
            f"{Q}/x:max-concurrent-dispatches=0,max-dispatches-per-second=-1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert out.stdout == ""
    [line] = out.stderr.strip().splitlines()
    assert line.startswith(f"cloud-tasks-emulator: --queue {Q}/x:")
    assert "max_dispatches_per_second" in line
