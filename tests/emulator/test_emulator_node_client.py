"""The official Node.js client (@google-cloud/tasks over @grpc/grpc-js, insecure
credentials) against the emulator. ``make setup`` installs tests/node with ``npm ci``."""

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


def test_node_client_creates_queues_and_tasks_over_insecure_grpc(target: Any) -> None:
    node = shutil.which("node")
    assert node, "Node.js is required for this test (apt-get install nodejs)"
    assert (NODE_DIR / "node_modules" / "@google-cloud" / "tasks").is_dir(), (
        "run `make setup` (npm ci in tests/node) first"
    )
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
