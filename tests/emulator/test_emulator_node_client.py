"""The official Node.js client (@google-cloud/tasks over @grpc/grpc-js, insecure
credentials) against the emulator. The test installs tests/node's locked packages
itself (``npm ci``, again only when package-lock.json changes), so ``make setup``
needs no Node.js."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import google.auth.transport.requests
import pytest
from google.oauth2 import id_token

from emulator.testing import EmulatorProcess

pytestmark = pytest.mark.integration
NODE_DIR = Path(__file__).resolve().parents[1] / "node"
STAMP = NODE_DIR / "node_modules" / ".installed"


def _install_node_packages() -> None:
    """`npm ci` in tests/node unless the installed packages match the lock file."""
    lock = NODE_DIR / "package-lock.json"
    if STAMP.is_file() and STAMP.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    assert npm, "Node.js and npm are required for this test (apt-get install nodejs npm)"
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"npm ci in {NODE_DIR} failed:\n{done.stderr}"
    STAMP.touch()


def test_node_client_creates_queues_and_tasks_over_insecure_grpc(target: Any) -> None:
    node = shutil.which("node")
    assert node, "Node.js is required for this test (apt-get install nodejs)"
    _install_node_packages()
    parent = "projects/node/locations/l"
    url = target.url("/tasks/from-node")
    with EmulatorProcess() as emu:
        # No metadata-server probing: the test machine is not on Google Cloud.
        env = {**os.environ, "METADATA_SERVER_DETECTION": "none"}
        result = subprocess.run(
            [node, str(NODE_DIR / "client_test.js"), emu.grpc_host, parent, url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        seen = json.loads(result.stdout)
        assert seen["queueState"] == "RUNNING"
        assert seen["maxBurstSize"] == 10
        assert seen["duplicateCode"] == 6  # ALREADY_EXISTS
        assert seen["missingCode"] == 5  # NOT_FOUND
        assert seen["queues"] == [f"{parent}/queues/node-client"]
        [delivery] = target.wait_for(1, seen["taskName"])
        assert delivery.body == b'{"from":"node"}'
        assert delivery.headers["Content-Type"] == "application/json"
        token = delivery.headers["Authorization"].removeprefix("Bearer ")
        claims = id_token.verify_token(
            token, google.auth.transport.requests.Request(), audience=url, certs_url=emu.certs_url
        )
        assert claims["email"] == "node@emu.iam.gserviceaccount.com"
