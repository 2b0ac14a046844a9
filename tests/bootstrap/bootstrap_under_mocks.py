"""Evaluate bootstrap/__main__.py under Pulumi's mocks and print what it declares.

    python tests/bootstrap/bootstrap_under_mocks.py '{"gcp:project": "p", ...}'

prints one JSON object: {"resources": [{type, name, inputs, outputs}...],
"outputs": {invoker_email, ..., workload_identity_provider, service_account, ...}}, or
{"error": "..."} when the program refuses its config. It runs in its own
process because Pulumi's mock runtime is global: evaluating a second program
in the test process would mix its resources into the main program's plan.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path
from typing import Any

import pulumi

ROOT = Path(__file__).resolve().parents[2]
# This checkout's packages, whatever an installed (editable) copy points at.
sys.path.insert(0, str(ROOT))

from plan.engine import RecordingMonitor  # noqa: E402

PROJECT_NUMBER = "123456789012"


class RecordingMocks(pulumi.runtime.Mocks):
    """Records every resource; computes the outputs Google would (emails, resource names)."""

    def __init__(self) -> None:
        self.resources: list[dict[str, Any]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        outputs = dict(inputs)
        if args.typ == "gcp:serviceaccount/account:Account":
            email = f"{inputs['accountId']}@{inputs['project']}.iam.gserviceaccount.com"
            outputs |= {
                "email": email,
                "member": f"serviceAccount:{email}",
                "name": f"projects/{inputs['project']}/serviceAccounts/{email}",
            }
        elif args.typ == "gcp:projects/serviceIdentity:ServiceIdentity":
            email = f"service-{PROJECT_NUMBER}@gcp-sa-cloudtasks.iam.gserviceaccount.com"
            outputs |= {"email": email, "member": f"serviceAccount:{email}"}
        elif args.typ == "gcp:projects/iAMCustomRole:IAMCustomRole":
            outputs["name"] = f"projects/{inputs['project']}/roles/{inputs['roleId']}"
        elif args.typ == "gcp:artifactregistry/repository:Repository":
            outputs["name"] = (
                f"projects/{inputs['project']}/locations/{inputs['location']}/repositories/"
                f"{inputs['repositoryId']}"
            )
        elif args.typ == "gcp:iam/workloadIdentityPool:WorkloadIdentityPool":
            outputs["name"] = (
                f"projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/"
                f"{inputs['workloadIdentityPoolId']}"
            )
        elif args.typ == "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider":
            outputs["name"] = (
                f"projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/"
                f"{inputs['workloadIdentityPoolId']}/providers/"
                f"{inputs['workloadIdentityPoolProviderId']}"
            )
        self.resources.append(
            {"type": args.typ, "name": args.name, "inputs": inputs, "outputs": outputs}
        )
        return f"{args.name}-id", outputs

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        raise AssertionError(f"the bootstrap program should make no calls, made {args.token}")


def main(config: dict[str, str]) -> dict[str, Any]:
    mocks = RecordingMocks()
    # The plan's monitor also records what Mocks.new_resource cannot see: dependencies.
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(
        mocks, project="cloud-tasks-bootstrap", stack="dev", preview=False, monitor=monitor
    )
    pulumi.runtime.set_all_config(config)
    exported: dict[str, Any] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def evaluate() -> pulumi.Output[None]:
        program = runpy.run_path(str(ROOT / "bootstrap" / "__main__.py"), run_name="__main__")
        deployer = program["deployer"]
        foundation = program["foundation"]
        outputs: dict[str, Any] = {
            "invoker_email": foundation.invoker.email,
            "runtime_email": foundation.runtime.email,
            "enqueuer_email": foundation.enqueuer.email,
            "tasks_agent_email": foundation.tasks_agent.email,
        }
        if deployer is not None:
            outputs |= {
                "workload_identity_provider": deployer.provider.name,
                "service_account": deployer.account.email,
                "principal_set": deployer.principal_set,
                "preview_service_account": deployer.previewer.email,
            }
        return pulumi.Output.all(**outputs).apply(exported.update)

    evaluate()
    name_of = {reg.urn: reg.name for reg in monitor.registrations}
    depends = {
        reg.name: sorted(name_of.get(d, d) for d in reg.dependencies)
        for reg in monitor.registrations
    }
    for resource in mocks.resources:
        resource["dependencies"] = depends.get(resource["name"], [])
    return {"resources": mocks.resources, "outputs": exported}


if __name__ == "__main__":
    try:
        result = main(json.loads(sys.argv[1]))
    except ValueError as exc:  # BootstrapConfigError: what a user would see
        result = {"error": str(exc)}
    print(json.dumps(result), flush=True)
    # Skip interpreter teardown: the mock runtime's event loop complains on close.
    os._exit(0)
