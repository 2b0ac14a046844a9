"""The planned dead-letter bucket on this machine: a Cloud Storage emulator process.

The program declares a Cloud Storage bucket for dead letters and hands its name to
the worker (`TASKS_DEAD_LETTER_BUCKET`); the cloud worker writes there with the
official `google-cloud-storage` client. Locally the same client writes to
`gcp-storage-emulator` (a package from the registry, run as its own process as the
cloud runs Cloud Storage apart from the worker) on a loopback port, found through
`STORAGE_EMULATOR_HOST`, which the client honours. Its data lives in
`.devstack/<stack>/storage/`, so dead letters outlive a restart of the stack.

`spawn_storage` starts it, `wait_storage` waits until it answers and creates the
planned bucket through the official client, `worker_env` is what the worker gets
on top of its planned environment, and `storage_outputs` the keys `outputs.json`
gains (`storage_emulator_host`, `dead_letter_bucket`).

Deliberately not here: deciding whether the plan has a bucket (`devstack.realise`
gives the verdict; the bucket's name is the plan's `dead_letter_bucket` output) and
the order of the stack's parts (`devstack.runtime`). The emulator checks no
credentials and no IAM: the bucket's grants have no local effect.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from contract.names import OUTPUT_DEAD_LETTER_BUCKET, OUTPUT_STORAGE_EMULATOR_HOST
from devstack import processes
from devstack.state import StackPaths

ROLE: Final = "storage"
STORAGE_EMULATOR_HOST_ENV: Final = "STORAGE_EMULATOR_HOST"  # read by google-cloud-storage
HEALTH_PATH: Final = "/"  # gcp-storage-emulator's health check
START_TIMEOUT_S: Final = 20.0
EMULATOR_COMMAND: Final = "gcp-storage-emulator"


def planned_bucket(outputs: Mapping[str, str]) -> str | None:
    """The bucket the plan declares for dead letters (its output), or None."""
    return outputs.get(OUTPUT_DEAD_LETTER_BUCKET) or None


def _command() -> str:
    # The console script installed next to this interpreter (the project's venv).
    beside = Path(sys.executable).with_name(EMULATOR_COMMAND)
    found = str(beside) if beside.exists() else shutil.which(EMULATOR_COMMAND)
    if found is None:
        raise processes.ProcessError(
            f"{EMULATOR_COMMAND} is not installed in this environment; run `make setup` "
            "(requirements.txt lists gcp-storage-emulator)"
        )
    return found


def spawn_storage(paths: StackPaths, host: str) -> processes.Started:
    """Start the Cloud Storage emulator on a free loopback port, data under the stack."""
    port = processes.free_port(host)
    data = paths.dir / "storage"
    data.mkdir(parents=True, exist_ok=True)
    argv = [_command(), "-d", str(data), "start", "--host", host, "--port", str(port)]
    return processes.spawn(
        ROLE,
        argv,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        log=paths.dir / "storage.log",
        cwd=paths.dir,
        url=f"http://{host}:{port}",
        health_path=HEALTH_PATH,
    )


def wait_storage(started: processes.Started, bucket: str) -> None:
    """Wait until the emulator answers, then create `bucket` in it (kept if it exists)."""
    processes.wait_healthy(started, START_TIMEOUT_S)
    ensure_bucket(started.record.url, bucket)


def ensure_bucket(url: str, bucket: str) -> None:
    """Create `bucket` through the official client unless it already exists."""
    # Imported here: the client costs most of a second, and only `up` needs it.
    from google.api_core.exceptions import Conflict
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.storage import Client

    client = Client(
        project="devstack",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": url},
    )
    with contextlib.suppress(Conflict):  # the data of an earlier `up`
        client.create_bucket(bucket, timeout=10)


def worker_env(started: processes.Started | None) -> dict[str, str]:
    """What the worker gets besides its planned env: where Cloud Storage is."""
    return {} if started is None else {STORAGE_EMULATOR_HOST_ENV: started.record.url}


def storage_outputs(started: processes.Started | None, bucket: str | None) -> dict[str, str]:
    """The keys `outputs.json` gains when the plan has a dead-letter bucket."""
    if started is None or bucket is None:
        return {}
    return {OUTPUT_STORAGE_EMULATOR_HOST: started.record.url, OUTPUT_DEAD_LETTER_BUCKET: bucket}
