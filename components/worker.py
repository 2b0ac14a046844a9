"""WorkerService: the private Cloud Run service that runs the task worker.

- the image: built from `service/Dockerfile` (build context = repository root)
  with `pulumi_docker_build` and pushed to the Artifact Registry repository
  `repository_id` that bootstrap/ created (with its cleanup policy, and push
  rights for the deployer on it alone), unless `WorkerConfig.image` names a
  prebuilt one. The image is retained on delete: `pulumi destroy` must not call
  the registry with the push token stored at the last `up`, long expired; the
  repository's cleanup policy removes old images instead;
- the `gcp.cloudrunv2.Service`, named explicitly so its deterministic URL is
  known before it exists; private (`invoker_iam_disabled=False`), default URL
  kept because Cloud Tasks calls it, running as the runtime account;
- `roles/run.invoker` for the invoker account on this service only.

It takes its config section, `WorkerConfig`, as is (name, image, ingress,
timeout, scaling, limits, deletion protection, custom audience), the `gcp`
section, and from the other components the accounts, the audience and the APIs
to wait for. The worker checks tokens itself too (defence in depth): the
program passes it the audience it must accept and the invoker email allowed to
call it.

This component deliberately grants nothing to the runtime account and does not
compute the audience: the pipeline does, because the queue needs the same value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_docker_build as docker_build
import pulumi_gcp as gcp

from components.config import GcpConfig, WorkerConfig
from components.worker_env import DOCKERFILE
from contract.durations import format_duration
from contract.names import (
    HEALTH_ROUTE,
    WORKER_ENV_ALLOWED_INVOKERS,
    WORKER_ENV_AUDIENCE,
    WORKER_ENV_EXTRA_MODULES,
)
from contract.resources import (
    RUN_INVOKER_ROLE,
    SECRET_ACCESSOR_ROLE,
    SERVICE_ACCOUNT_MEMBER_PREFIX,
)

WORKER_COMMAND = ("python", "-m", "service")
"""The worker contract: the same command as the Dockerfile CMD and the local stack."""
CONTAINER_PORT = 8080
BUILD_CONTEXT = "."  # the repository root: Pulumi runs the program from there
IMAGE_NAME = "worker"
INVOKER_ROLE = RUN_INVOKER_ROLE


class WorkerService(pulumi.ComponentResource):
    """Image, Cloud Run service and its single invoker binding."""

    image: docker_build.Image | None
    service: gcp.cloudrunv2.Service
    invoker_binding: gcp.cloudrunv2.ServiceIamMember
    image_ref: pulumi.Output[str]
    """The image the service runs (with digest when built here)."""
    url: pulumi.Output[str]
    """The service's `uri` as Cloud Run reports it."""

    def __init__(
        self,
        name: str,
        config: WorkerConfig,
        *,
        gcp_config: GcpConfig,
        image_tag: str,
        runtime_email: pulumi.Input[str],
        invoker_email: pulumi.Input[str],
        invoker_member: pulumi.Input[str],
        audience: pulumi.Input[str],
        program_envs: Mapping[str, pulumi.Input[str]] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`image_tag`: tag of the built image (the stack name), so stacks sharing a
        registry do not collide. `program_envs`: more of the worker's env the program
        computes (the dead-letter bucket, the queues' retry policies)."""
        self.program_envs = dict(program_envs or {})
        super().__init__("tasks:index:WorkerService", name, None, opts)

        self.image = None
        if config.image is not None:
            self.image_ref = pulumi.Output.from_input(config.image)
        else:
            self.image_ref = self._build_image(name, config, gcp_config, image_tag)

        # Cloud Run checks at deploy that the runtime account may read each secret
        # (https://cloud.google.com/run/docs/configuring/services/secrets#access-secret):
        # one grant per secret, on that secret only, before the service.
        self.secret_grants = [
            gcp.secretmanager.SecretIamMember(
                f"{name}-secret-{ref.secret}",
                project=gcp_config.project,
                secret_id=ref.secret,
                role=SECRET_ACCESSOR_ROLE,
                member=pulumi.Output.concat(SERVICE_ACCOUNT_MEMBER_PREFIX, runtime_email),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for ref in {ref.secret: ref for ref in config.secret_refs}.values()
        ]
        self.service = self._service(
            name,
            config,
            gcp_config,
            runtime_email=runtime_email,
            invoker_email=invoker_email,
            audience=audience,
            depends_on=self.secret_grants,
        )
        self.invoker_binding = gcp.cloudrunv2.ServiceIamMember(
            f"{name}-invoker",
            project=gcp_config.project,
            location=gcp_config.region,
            name=self.service.name,
            role=INVOKER_ROLE,
            member=invoker_member,
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

    def _build_image(
        self,
        name: str,
        config: WorkerConfig,
        where: GcpConfig,
        image_tag: str,
    ) -> pulumi.Output[str]:
        """The image built from `service/` into bootstrap's repository."""
        registry = f"{where.region}-docker.pkg.dev"
        tag = f"{registry}/{where.project}/{config.repository_id}/{IMAGE_NAME}:{image_tag}"
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
            # Destroy forgets the image instead of deleting its tag with the token saved
            # at the last `up` (an access token lives one hour, so a later destroy would
            # fail on it); the repository's cleanup policy (bootstrap/) prunes images.
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        return self.image.ref

    def _service(
        self,
        name: str,
        config: WorkerConfig,
        where: GcpConfig,
        *,
        runtime_email: pulumi.Input[str],
        invoker_email: pulumi.Input[str],
        audience: pulumi.Input[str],
        depends_on: Sequence[pulumi.Resource],
    ) -> gcp.cloudrunv2.Service:
        """The private Cloud Run service (`google.cloud.run.v2.Service`) running the image."""
        return gcp.cloudrunv2.Service(
            f"{name}-service",
            name=config.service_name,
            project=where.project,
            location=where.region,
            ingress=config.ingress,
            # Private: callers need run.invoker. The default run.app URL stays on
            # (default_uri_disabled would break Cloud Tasks, which calls it).
            invoker_iam_disabled=False,
            default_uri_disabled=False,
            # The audience every task's token carries, whichever URL the task was sent
            # to: the custom audience, or the deterministic run.app URL (Cloud Run also
            # serves a hash URL; a token for one URL is not valid for the other unless
            # the audience is declared here, https://cloud.google.com/run/docs/configuring/custom-audiences).
            custom_audiences=[audience],
            deletion_protection=config.deletion_protection,
            template=gcp.cloudrunv2.ServiceTemplateArgs(
                service_account=runtime_email,
                timeout=format_duration(config.request_timeout),
                max_instance_request_concurrency=config.request_concurrency,
                scaling=gcp.cloudrunv2.ServiceTemplateScalingArgs(
                    min_instance_count=config.min_instances,
                    max_instance_count=config.max_instances,
                ),
                containers=[
                    _container(config, self.image_ref, audience, invoker_email, self.program_envs)
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )


def _own_envs(config: WorkerConfig) -> list[gcp.cloudrunv2.ServiceTemplateContainerEnvArgs]:
    """The stack config's part of the environment: task modules, settings, secrets."""
    cloudrun = gcp.cloudrunv2
    plain = dict(config.env_vars)
    if config.task_modules:
        plain = {WORKER_ENV_EXTRA_MODULES: ",".join(config.task_modules), **plain}
    envs = [cloudrun.ServiceTemplateContainerEnvArgs(name=n, value=v) for n, v in plain.items()]
    envs += [
        cloudrun.ServiceTemplateContainerEnvArgs(
            name=ref.env,
            value_source=cloudrun.ServiceTemplateContainerEnvValueSourceArgs(
                secret_key_ref=cloudrun.ServiceTemplateContainerEnvValueSourceSecretKeyRefArgs(
                    secret=ref.secret, version=ref.version
                )
            ),
        )
        for ref in config.secret_refs
    ]
    return envs


def _container(
    config: WorkerConfig,
    image: pulumi.Input[str],
    audience: pulumi.Input[str],
    invoker_email: pulumi.Input[str],
    program_envs: Mapping[str, pulumi.Input[str]],
) -> gcp.cloudrunv2.ServiceTemplateContainerArgs:
    """The worker container: command, port, the token checks' env, limits and probe."""
    return gcp.cloudrunv2.ServiceTemplateContainerArgs(
        image=image,
        commands=list(WORKER_COMMAND),
        ports=gcp.cloudrunv2.ServiceTemplateContainerPortsArgs(container_port=CONTAINER_PORT),
        envs=[
            gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                name=WORKER_ENV_AUDIENCE, value=audience
            ),
            gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                name=WORKER_ENV_ALLOWED_INVOKERS, value=invoker_email
            ),
            *(
                gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(name=env, value=value)
                for env, value in program_envs.items()
            ),
            *_own_envs(config),
        ],
        resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
            limits={"cpu": config.cpu, "memory": config.memory},
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
