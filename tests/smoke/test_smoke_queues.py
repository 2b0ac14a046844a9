"""The smoke test proves every queue of a stack: one smoke task through each, end to end.

A real emulator with three queues, the real worker process checking tokens against the
emulator's issuer and routing with `TASKS_QUEUES` / `TASKS_ROUTES`, and
`scripts/smoke_test.py` run as the command it is.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.cloud import tasks_v2

from contract.names import WORKER_ENV_QUEUES, WORKER_ENV_ROUTES
from emulator.testing import EmulatorProcess
from tests.service.support import REPO_ROOT, WorkerProcess

pytestmark = pytest.mark.integration
PROJECT = "smoke-queues"
LOCATION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
INVOKER = f"tasks-invoker@{PROJECT}.iam.gserviceaccount.com"
AUDIENCE = "https://worker-smoke-queues.a.run.app"
SMOKE = REPO_ROOT / "scripts" / "smoke_test.py"


@dataclass
class Stack:
    emulator: EmulatorProcess
    worker: WorkerProcess
    paths: dict[str, str]

    def outputs(self, paths: dict[str, str] | None = None) -> dict[str, Any]:
        paths = paths or self.paths
        return {
            "project": PROJECT,
            "location": LOCATION,
            "queue": paths["default"],
            "service_url": self.worker.url,
            "audience": AUDIENCE,
            "invoker_email": INVOKER,
            "emulator_host": self.emulator.grpc_host,
            "emulator_url": self.emulator.http_url,
            "queues": paths,
            "routes": {"record": "email"},
        }


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    suffix = time.time_ns() % 10**8
    ids = {key: f"{key}-{suffix}" for key in ("default", "email", "reports")}
    with EmulatorProcess() as emulator:
        client = emulator.client()
        paths = {
            key: client.create_queue(
                parent=PARENT, queue=tasks_v2.Queue(name=f"{PARENT}/queues/{queue_id}")
            ).name
            for key, queue_id in ids.items()
        }
        worker = WorkerProcess(
            {
                "TASKS_AUDIENCE": AUDIENCE,
                "TASKS_ALLOWED_INVOKERS": INVOKER,
                "TASKS_CERTS_URL": emulator.certs_url,
                WORKER_ENV_QUEUES: json.dumps(ids),
                WORKER_ENV_ROUTES: json.dumps({"record": "email"}),
            }
        )
        try:
            yield Stack(emulator, worker, paths)
        finally:
            worker.stop()


def run_smoke(
    outputs: dict[str, Any], tmp_path: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    return subprocess.run(
        [sys.executable, str(SMOKE), "--outputs", str(path), *extra],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=REPO_ROOT,
        check=False,
    )


def smoke_done_on(key: str) -> Callable[[dict[str, Any]], bool]:
    """Matches the worker's log line of a smoke task that ran on queue `key`."""

    def matches(entry: dict[str, Any]) -> bool:
        return (
            entry.get("task_type") == "smoke"
            and entry.get("queue_key") == key
            and entry.get("outcome") == "ok"
        )

    return matches


def test_one_smoke_task_goes_through_every_queue(stack: Stack, tmp_path: Path) -> None:
    done = run_smoke(stack.outputs(), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "through each of 3 queue(s) (default, email, reports)" in done.stdout
    for key in stack.paths:
        assert f"ok queue {key}: delivered {stack.paths[key]}/tasks/smoke-" in done.stderr
    # The worker ran each one (not a dead letter) and logged the queue it came on.
    for key in stack.paths:
        line = stack.worker.wait_for_log(smoke_done_on(key))
        assert line["status"] == 200
    assert not stack.worker.entries(lambda e: e.get("outcome") == "dead_letter")


def test_a_failing_queue_is_named_and_the_others_still_checked(
    stack: Stack, tmp_path: Path
) -> None:
    client = stack.emulator.client()
    # A queue whose tasks go nowhere (its queue-level target points at a closed port).
    broken = client.create_queue(
        parent=PARENT,
        queue=tasks_v2.Queue(
            name=f"{PARENT}/queues/broken-{time.time_ns() % 10**8}",
            http_target=tasks_v2.HttpTarget(
                uri_override=tasks_v2.UriOverride(
                    scheme=tasks_v2.UriOverride.Scheme.HTTP, host="127.0.0.1", port=9
                )
            ),
        ),
    ).name
    paths = {**stack.paths, "reports": broken, "fax": f"{PARENT}/queues/never-created"}
    done = run_smoke(stack.outputs(paths), tmp_path, "--timeout", "6")
    assert done.returncode == 1
    reason = done.stderr.strip().splitlines()[-1]
    assert reason.startswith("SMOKE TEST FAILED: queue fax (")
    assert f"queue fax ({paths['fax']}): enqueue failed: queue {paths['fax']} not found" in reason
    assert f"; queue reports ({broken}): task not done within" in reason
    assert "queue email" not in reason
    assert "queue default" not in reason
    assert f"ok queue email: delivered {stack.paths['email']}/tasks/smoke-" in done.stderr
    assert f"ok queue default: delivered {stack.paths['default']}/tasks/smoke-" in done.stderr
