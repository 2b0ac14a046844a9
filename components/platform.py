"""Platform: the Google Cloud APIs the pipeline uses and the Cloud Tasks service agent.

Every other component depends on the `gcp.projects.Service` of the API it calls,
so a first `pulumi up` on a fresh project enables APIs before using them.
APIs are never disabled on destroy (`disable_on_destroy=False`): other workloads
in the project may use them. It takes the `gcp` config section (the project)
and the list of APIs to enable. This component deliberately grants nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_gcp as gcp

from components.config import GcpConfig

# API name -> service. `serviceusage` must already be on (it is what enables the rest).
CLOUD_TASKS_API = "cloudtasks.googleapis.com"
CLOUD_RUN_API = "run.googleapis.com"
IAM_API = "iam.googleapis.com"
IAM_CREDENTIALS_API = "iamcredentials.googleapis.com"  # OIDC tokens minted for the invoker
ARTIFACT_REGISTRY_API = "artifactregistry.googleapis.com"
RESOURCE_MANAGER_API = "cloudresourcemanager.googleapis.com"  # project number lookup
# Only when the worker reads secrets (a service name, not a credential).
SECRET_MANAGER_API = "secretmanager.googleapis.com"  # noqa: S105

PIPELINE_APIS = (
    CLOUD_TASKS_API,
    CLOUD_RUN_API,
    IAM_API,
    IAM_CREDENTIALS_API,
    ARTIFACT_REGISTRY_API,
    RESOURCE_MANAGER_API,
)


class Platform(pulumi.ComponentResource):
    """Enabled APIs and the Cloud Tasks service identity."""

    services: dict[str, gcp.projects.Service]
    """One `gcp.projects.Service` per API, keyed by API name."""
    tasks_agent: gcp.projects.ServiceIdentity
    """The Cloud Tasks service agent, created up front because grants to a
    not-yet-created agent fail and agents are otherwise created lazily
    (https://cloud.google.com/iam/docs/service-agents)."""

    def __init__(
        self,
        name: str,
        config: GcpConfig,
        *,
        apis: Sequence[str] = PIPELINE_APIS,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("tasks:index:Platform", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.services = {
            api: gcp.projects.Service(
                f"{name}-{api.split('.')[0]}",
                project=config.project,
                service=api,
                disable_on_destroy=False,
                opts=child,
            )
            for api in apis
        }
        self.tasks_agent = gcp.projects.ServiceIdentity(
            f"{name}-tasks-agent",
            project=config.project,
            service=CLOUD_TASKS_API,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.services[CLOUD_TASKS_API]]),
        )
        self.register_outputs(
            {
                "apis": list(self.services),
                "tasks_agent_email": self.tasks_agent.email,
            }
        )

    def api(self, *apis: str) -> list[pulumi.Resource]:
        """The Service resources of the given APIs, for `depends_on`."""
        return [self.services[api] for api in apis]
