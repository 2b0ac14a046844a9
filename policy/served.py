"""Serve the pack as the Pulumi CLI does, and talk to it as the engine does.

`served_pack(stack, config)` starts `policy/.venv/bin/python -m pulumi.policy
ENGINE policy/` (the command Pulumi's Python analyzer host runs) with the
environment the CLI gives a pack (PULUMI_PROJECT, PULUMI_STACK, PULUMI_CONFIG,
...), reads the port the pack prints, and yields a `PackClient` speaking
Pulumi's Analyzer gRPC API with the main venv's proto stubs. The tests and
benchmarks/policy_bench.py use it.

This module deliberately does not create policy/.venv (`make policy-venv`
does) and is not used by the pack itself.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from contract.resources import PROJECT_NAME

POLICY_DIR = Path(__file__).resolve().parent
POLICY_PYTHON = POLICY_DIR / ".venv" / "bin" / "python"


class PackNotServing(RuntimeError):
    """The pack process did not print its port (bad venv, import error...)."""


def _struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    return json_format.ParseDict(dict(props), struct_pb2.Struct())


class PackClient:
    """The engine's side of the Analyzer API, for plan resources (`python -m plan` JSON)."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = analyzer_pb2_grpc.AnalyzerStub(channel)

    def info(self) -> Any:
        return self._stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=20)

    def analyze(self, resource: Mapping[str, Any]) -> list[Any]:
        """Diagnostics of the resource policies for one resource (its inputs)."""
        request = analyzer_pb2.AnalyzeRequest(
            type=resource["type"],
            properties=_struct(resource.get("inputs") or {}),
            urn=resource["urn"],
            name=resource["name"],
        )
        return list(self._stub.Analyze(request, timeout=20).diagnostics)

    def analyze_stack(self, resources: list[Mapping[str, Any]]) -> list[Any]:
        """Diagnostics of the stack policies (resource state: outputs under inputs)."""
        request = analyzer_pb2.AnalyzeStackRequest(
            resources=[
                analyzer_pb2.AnalyzerResource(
                    type=r["type"],
                    properties=_struct({**(r.get("outputs") or {}), **(r.get("inputs") or {})}),
                    urn=r["urn"],
                    name=r["name"],
                )
                for r in resources
            ]
        )
        return list(self._stub.AnalyzeStack(request, timeout=20).diagnostics)


@contextmanager
def served_pack(
    stack: str, config: Mapping[str, str] | None = None, python: Path = POLICY_PYTHON
) -> Iterator[PackClient]:
    if not python.is_file():
        raise PackNotServing(f"{python} does not exist: run `make policy-venv` first")
    env = {
        **os.environ,
        "PULUMI_PROJECT": PROJECT_NAME,
        "PULUMI_STACK": stack,
        "PULUMI_DRY_RUN": "true",
        "PULUMI_CONFIG": json.dumps(dict(config or {})),
    }
    process = subprocess.Popen(
        # The engine address is unused by a pack; the CLI always passes one.
        [str(python), "-u", "-m", "pulumi.policy", "127.0.0.1:1", str(POLICY_DIR)],
        cwd=POLICY_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()  # PolicyPack prints its port once serving
        if not line.isdigit():
            process.kill()
            _, err = process.communicate(timeout=10)
            raise PackNotServing(f"the pack did not start (printed {line!r}):\n{err}")
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        try:
            yield PackClient(channel)
        finally:
            channel.close()
    finally:
        process.kill()
        process.wait(timeout=10)
