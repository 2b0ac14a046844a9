"""The planned dead-letter bucket on this machine: a Cloud Storage emulator process.

The program declares a Cloud Storage bucket for dead letters and hands its name to
the worker (`TASKS_DEAD_LETTER_BUCKET`); the cloud worker writes there with the
official `google-cloud-storage` client. Locally the same client writes to
`gcp-storage-emulator` (a package from the registry, run as its own process as the
cloud runs Cloud Storage apart from the worker) on a loopback port, found through
`STORAGE_EMULATOR_HOST`, which the client honours. Its data lives in
`.devstack/<stack>/storage/`, so dead letters outlive a restart of the stack.

`start_storage` starts it, waits until it answers (another port if the chosen one
was taken meanwhile) and creates the planned bucket through the official client;
`worker_env` is what the worker gets on top of its planned environment, and
`storage_outputs` the keys `outputs.json` gains (`storage_emulator_host`,
`dead_letter_bucket`).

Deliberately not here: deciding whether the plan has a bucket (`devstack.realise`
gives the verdict; the bucket's name is the plan's `dead_letter_bucket` output) and
the order of the stack's parts (`devstack.runtime`). The emulator checks no
credentials and no IAM: the bucket's grants have no local effect.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Final

from contract.names import OUTPUT_DEAD_LETTER_BUCKET, OUTPUT_STORAGE_EMULATOR_HOST
from devstack import processes
from devstack.state import StackPaths

ROLE: Final = "storage"
STORAGE_EMULATOR_HOST_ENV: Final = "STORAGE_EMULATOR_HOST"  # read by google-cloud-storage
HEALTH_PATH: Final = "/"  # gcp-storage-emulator's health check
START_TIMEOUT_S: Final = 20.0
EMULATOR_MODULE: Final = "gcp_storage_emulator"  # the registry's gcp-storage-emulator
PORT_ATTEMPTS: Final = 3


def planned_bucket(outputs: Mapping[str, str]) -> str | None:
    """The bucket the plan declares for dead letters (its output), or None."""
    return outputs.get(OUTPUT_DEAD_LETTER_BUCKET) or None


def spawn_storage(paths: StackPaths, host: str, avoid: Collection[int] = ()) -> processes.Started:
    """Start the Cloud Storage emulator on a free loopback port, data under the stack.

    `avoid`: the stack's remembered ports (free now, since the stack is down, but the
    worker and the Tasks emulator will bind them again: queued tasks carry the worker's).
    Run as `python -m gcp_storage_emulator` (not its console script, whose process shows
    the interpreter first), so the command line `down` checks is the one recorded.
    """
    port = processes.free_port(host)
    while port in avoid:
        port = processes.free_port(host)
    data = paths.dir / "storage"
    data.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", EMULATOR_MODULE, "-d", str(data), "start"]
    return processes.spawn(
        ROLE,
        [*argv, "--host", host, "--port", str(port)],
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        log=paths.dir / "storage.log",
        cwd=paths.dir,
        url=f"http://{host}:{port}",
        health_path=HEALTH_PATH,
    )


def start_storage(
    paths: StackPaths,
    host: str,
    bucket: str,
    *,
    adopt: Callable[[processes.Started], None],
    drop: Callable[[processes.Started], None],
    avoid: Collection[int] = (),
) -> processes.Started:
    """Spawn the emulator, wait until it answers, create `bucket`. `adopt` records each
    process as soon as it exists (so `down` finds it); `drop` forgets one that lost its
    port to another program between choosing and binding it (then another is tried)."""
    for _ in range(PORT_ATTEMPTS):
        started = spawn_storage(paths, host, avoid)
        adopt(started)
        if _ready(started):
            ensure_bucket(started.record.url, bucket)
            return started
        # The emulator does not exit when its port is taken (its server thread dies):
        # stop it, and try another port.
        processes.stop(started.record, child=started.process)
        drop(started)
    raise processes.ProcessError(
        f"the storage emulator found no free port in {PORT_ATTEMPTS} tries; see "
        f"{paths.dir / 'storage.log'}"
    )


def _ready(started: processes.Started) -> bool:
    """True once it answers; False if it lost its port; raises if it fails otherwise."""
    deadline = time.monotonic() + START_TIMEOUT_S
    url = started.record.url + started.record.health_path
    while True:
        if _lost_port(started):
            return False
        code = started.process.poll()
        if code is not None:
            raise processes.ProcessError(
                f"the storage emulator exited with status {code} while starting; see "
                f"{started.record.log}"
            )
        ok, last = processes.check_health(url, timeout=0.5)
        if ok:
            return True
        if time.monotonic() > deadline:
            raise processes.ProcessError(
                f"the storage emulator did not answer {url} within {START_TIMEOUT_S:.0f} s "
                f"(last: {last}); see {started.record.log}"
            )
        time.sleep(0.05)


def _lost_port(started: processes.Started) -> bool:
    with Path(started.record.log).open("rb") as log:
        log.seek(started.log_offset)
        return b"address already in use" in log.read().lower()


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
