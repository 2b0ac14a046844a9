"""Outputs computed the way Google Cloud computes them, deterministically.

`PlanMocks` answers the program's RegisterResource and Invoke calls under
`pulumi.runtime.set_mocks`: service account emails from account ids, the Cloud
Run URL from the service name, project number and region, the queue path with
Pulumi's auto-name suffix, `serviceAccount:` members. The same inputs always
give the same outputs, so snapshots are stable.

Deliberately not here: recording what the program declares (`plan.engine`)
and any network call.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pulumi.runtime import mocks as pulumi_mocks

from contract.resources import (
    ARTIFACT_REPOSITORY_TYPE,
    BUCKET_TYPE,
    GET_CLIENT_CONFIG_INVOKE,
    GET_PROJECT_INVOKE,
    IAM_MEMBER_TYPES,
    IMAGE_TYPE,
    LOG_METRIC_TYPE,
    NOTIFICATION_CHANNEL_TYPE,
    PROJECT_SERVICE_TYPE,
    QUEUE_TYPE,
    RUN_SERVICE_TYPE,
    SERVICE_ACCOUNT_TYPE,
    SERVICE_IDENTITY_TYPE,
)
from plan.errors import PlanError


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def project_number(project: str) -> str:
    """A stable, realistic 12-digit project number for a project id."""
    return str(100_000_000_000 + int(_digest("number", project), 16) % 900_000_000_000)


class PlanMocks(pulumi_mocks.Mocks):
    """Outputs computed the way Google Cloud computes them, deterministically."""

    def __init__(self, stack: str, project: str, region: str) -> None:
        self.stack = stack
        self.project = project
        self.region = region

    def call(self, args: pulumi_mocks.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        data_source = args.token
        if data_source == GET_PROJECT_INVOKE:
            project = args.args.get("projectId") or self.project
            return {
                "id": f"projects/{project}",
                "projectId": project,
                "number": project_number(project),
                "name": project,
            }
        if data_source == GET_CLIENT_CONFIG_INVOKE:
            return {
                "id": "client-config",
                "project": self.project,
                "region": self.region,
                "accessToken": "offline-plan-access-token",
            }
        raise PlanError(
            f"the offline plan has no mock for the data source {data_source}; "
            "add one to plan.mocks.PlanMocks.call"
        )

    def new_resource(
        self, args: pulumi_mocks.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        if not args.custom:
            return "", {}
        project = str(inputs.get("project") or self.project)
        location = str(inputs.get("location") or self.region)
        computed = computed_outputs(self.stack, args.typ, args.name, inputs, project, location)
        resource_id = str(computed.pop("id", f"{args.name}-id"))
        return resource_id, {**inputs, **computed}


def computed_outputs(
    stack: str, typ: str, name: str, inputs: dict[str, Any], project: str, location: str
) -> dict[str, Any]:
    """What the provider would compute for a resource of `typ` (its id included)."""
    if typ == SERVICE_ACCOUNT_TYPE:
        email = f"{inputs['accountId']}@{project}.iam.gserviceaccount.com"
        full = f"projects/{project}/serviceAccounts/{email}"
        return {
            "id": full,
            "name": full,
            "email": email,
            "member": f"serviceAccount:{email}",
            "uniqueId": str(int(_digest("sa", email), 16) % 10**21),
        }
    if typ == QUEUE_TYPE:
        # Pulumi auto-names with the logical name and a random 7-hex suffix.
        queue = inputs.get("name") or f"{name}-{_digest('queue', stack, name)[:7]}"
        path = f"projects/{project}/locations/{location}/queues/{queue}"
        return {"id": path, "name": queue}
    if typ == RUN_SERVICE_TYPE:
        service = inputs["name"]
        uri = f"https://{service}-{project_number(project)}.{location}.run.app"
        return {
            "id": f"projects/{project}/locations/{location}/services/{service}",
            "uri": uri,
            "urls": [uri],
        }
    if typ == SERVICE_IDENTITY_TYPE:
        email = (
            f"service-{project_number(project)}@gcp-sa-"
            f"{str(inputs['service']).split('.')[0]}.iam.gserviceaccount.com"
        )
        return {
            "id": f"projects/{project}/services/{inputs['service']}",
            "email": email,
            "member": f"serviceAccount:{email}",
        }
    if typ == PROJECT_SERVICE_TYPE:
        return {"id": f"{project}/{inputs['service']}"}
    if typ == ARTIFACT_REPOSITORY_TYPE:
        repo = inputs["repositoryId"]
        return {
            "id": f"projects/{project}/locations/{location}/repositories/{repo}",
            "name": repo,
            "registryUri": f"{location}-docker.pkg.dev/{project}/{repo}",
        }
    if typ == IMAGE_TYPE:
        tag = inputs["tags"][0]
        digest = f"sha256:{_digest('image', tag)}"
        return {"id": digest, "digest": digest, "ref": f"{tag.rsplit(':', 1)[0]}@{digest}"}
    if typ == NOTIFICATION_CHANNEL_TYPE:
        # Monitoring numbers its channels; alert policies name them by this path.
        channel = (
            f"projects/{project}/notificationChannels/{int(_digest('channel', name), 16) % 10**19}"
        )
        return {"id": channel, "name": channel}
    if typ == LOG_METRIC_TYPE:
        return {"id": inputs["name"]}
    if typ == BUCKET_TYPE:
        return {"id": inputs["name"], "url": f"gs://{inputs['name']}"}
    if typ in IAM_MEMBER_TYPES:
        scope = (
            inputs.get("name") or inputs.get("serviceAccountId") or inputs.get("bucket") or project
        )
        return {
            "id": f"{scope}/{inputs['role']}/{inputs['member']}",
            "etag": f"BwY{_digest('etag', name)[:8]}",
        }
    return {"id": f"{name}-id"}
