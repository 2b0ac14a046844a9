"""WorkerService: the private Cloud Run service that runs the task worker.

- the image: built from `service/Dockerfile` (build context = repository root)
  with `pulumi_docker_build` and pushed to an Artifact Registry repository the
  stack creates, unless config names a prebuilt `image` (then neither exists);
- the `gcp.cloudrunv2.Service`, named explicitly so its deterministic URL is
  known before it exists; private (`invoker_iam_disabled=False`), default URL
  kept because Cloud Tasks calls it, running as the runtime account;
- `roles/run.invoker` for the invoker account on this service only.

The worker checks tokens itself too (defence in depth): the program passes it
the audience it must accept and the invoker email allowed to call it.

This component deliberately grants nothing to the runtime account and does not
compute the audience: the pipeline does, because the queue needs the same value.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker_build as docker_build
import pulumi_gcp as gcp

from contract.names import HEALTH_ROUTE, WORKER_ENV_ALLOWED_INVOKERS, WORKER_ENV_AUDIENCE

WORKER_COMMAND = ("python", "-m", "service")
"""The worker contract: the same command as the Dockerfile CMD and the local stack."""
CONTAINER_PORT = 8080
BUILD_CONTEXT = "."  # the repository root: Pulumi runs the program from there
DOCKERFILE = "service/Dockerfile"
IMAGE_NAME = "worker"
INVOKER_ROLE = "roles/run.invoker"


@dataclass(frozen=True)
class WorkerServiceArgs:
    project: str
    region: str
    service_name: str
    image_tag: str
    """Tag of the built image (the stack name), so stacks sharing a registry do not collide."""
    runtime_email: pulumi.Input[str]
    invoker_email: pulumi.Input[str]
    invoker_member: pulumi.Input[str]
    audience: pulumi.Input[str]
    custom_audience: str | None
    ingress: str
    request_timeout_s: int
    request_concurrency: int
    min_instances: int
    max_instances: int
    cpu: str
    memory: str
    deletion_protection: bool
    prebuilt_image: str | None
    repository_id: str
    run_api: tuple[pulumi.Resource, ...]
    registry_api: tuple[pulumi.Resource, ...]


class WorkerService(pulumi.ComponentResource):
    """Image, Cloud Run service and its single invoker binding."""

    repository: gcp.artifactregistry.Repository | None
    image: docker_build.Image | None
    service: gcp.cloudrunv2.Service
    invoker_binding: gcp.cloudrunv2.ServiceIamMember
    image_ref: pulumi.Output[str]
    """The image the service runs (with digest when built here)."""
    url: pulumi.Output[str]
    """The service's `uri` as Cloud Run reports it."""

    def __init__(
        self, name: str, args: WorkerServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tasks:index:WorkerService", name, None, opts)

        self.repository = None
        self.image = None
        if args.prebuilt_image is not None:
            self.image_ref = pulumi.Output.from_input(args.prebuilt_image)
        else:
            self.repository = gcp.artifactregistry.Repository(
                f"{name}-repository",
                project=args.project,
                location=args.region,
                repository_id=args.repository_id,
                format="DOCKER",
                description="Images of the Cloud Tasks worker",
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.registry_api)),
            )
            registry = f"{args.region}-docker.pkg.dev"
            tag = pulumi.Output.concat(
                registry,
                "/",
                self.repository.project,
                "/",
                self.repository.repository_id,
                f"/{IMAGE_NAME}:{args.image_tag}",
            )
            # Push with the deployer's own credentials (gcloud auth application-default
            # login / workload identity): an access token, never a stored key.
            token = gcp.organizations.get_client_config_output(
                opts=pulumi.InvokeOutputOptions(parent=self)
            ).access_token
            self.image = docker_build.Image(
                f"{name}-image",
                context=docker_build.BuildContextArgs(location=BUILD_CONTEXT),
                dockerfile=docker_build.DockerfileArgs(location=DOCKERFILE),
                platforms=[docker_build.Platform.LINUX_AMD64],
                push=True,
                # Never build on `pulumi preview` (PR previews would build images).
                build_on_preview=False,
                tags=[tag],
                registries=[
                    docker_build.RegistryArgs(
                        address=registry,
                        username="oauth2accesstoken",
                        password=pulumi.Output.secret(token),
                    )
                ],
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.image_ref = self.image.ref

        self.service = gcp.cloudrunv2.Service(
            f"{name}-service",
            name=args.service_name,
            project=args.project,
            location=args.region,
            ingress=args.ingress,
            # Private: callers need run.invoker. The default run.app URL stays on
            # (default_uri_disabled would break Cloud Tasks, which calls it).
            invoker_iam_disabled=False,
            default_uri_disabled=False,
            custom_audiences=[args.custom_audience] if args.custom_audience else None,
            deletion_protection=args.deletion_protection,
            template=gcp.cloudrunv2.ServiceTemplateArgs(
                service_account=args.runtime_email,
                timeout=f"{args.request_timeout_s}s",
                max_instance_request_concurrency=args.request_concurrency,
                scaling=gcp.cloudrunv2.ServiceTemplateScalingArgs(
                    min_instance_count=args.min_instances,
                    max_instance_count=args.max_instances,
                ),
                containers=[
                    gcp.cloudrunv2.ServiceTemplateContainerArgs(
                        image=self.image_ref,
                        commands=list(WORKER_COMMAND),
                        ports=gcp.cloudrunv2.ServiceTemplateContainerPortsArgs(
                            container_port=CONTAINER_PORT
                        ),
                        envs=[
                            gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                                name=WORKER_ENV_AUDIENCE, value=args.audience
                            ),
                            gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                                name=WORKER_ENV_ALLOWED_INVOKERS, value=args.invoker_email
                            ),
                        ],
                        resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                            limits={"cpu": args.cpu, "memory": args.memory},
                            # CPU only during requests: tasks are requests, nothing runs in between.
                            cpu_idle=True,
                            startup_cpu_boost=True,
                        ),
                        startup_probe=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeArgs(
                            http_get=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeHttpGetArgs(
                                path=HEALTH_ROUTE, port=CONTAINER_PORT
                            ),
                            period_seconds=2,
                            timeout_seconds=1,
                            failure_threshold=15,
                        ),
                    )
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.run_api)),
        )

        self.invoker_binding = gcp.cloudrunv2.ServiceIamMember(
            f"{name}-invoker",
            project=args.project,
            location=args.region,
            name=self.service.name,
            role=INVOKER_ROLE,
            member=args.invoker_member,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.url = self.service.uri

        self.register_outputs(
            {
                "url": self.url,
                "image": self.image_ref,
                "service_name": self.service.name,
            }
        )
