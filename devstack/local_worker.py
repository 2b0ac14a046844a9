"""The planned Cloud Run container as a local worker process.

`worker_spec(service, ...)` turns the plan's typed service view into a
`WorkerSpec`: the command (the container's, with `python` as this project's
interpreter), exactly the planned envs, the startup probe's path, and who
Cloud Run's IAM layer lets through. `WorkerSpec.process_env` adds the local
wiring (port, host, certs URL, the env Cloud Run sets for every container).

Deliberately not here: starting the process (`devstack.runtime`) and
deciding who may invoke (`devstack.realise` reads the run.invoker grants).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass

from contract.names import (
    HEALTH_ROUTE,
    WORKER_ENV_ALLOWED_INVOKERS,
    WORKER_ENV_AUDIENCE,
    WORKER_ENV_CERTS_URL,
    WORKER_ENV_PORT,
)
from plan.views import Container, PlannedService, last_segment

# When nothing may invoke the worker (no run.invoker member), Cloud Run answers 403
# to every caller. The worker checks tokens only when its allow-list is set, so an
# address that no token can carry (.invalid is reserved, RFC 2606) keeps the check
# on while matching nobody.
NOBODY_INVOKER = "no-run-invoker-bound@devstack.invalid"

# The worker contract: the image's CMD (service/Dockerfile) is `python -m service`.
IMAGE_COMMAND = ("python", "-m", "service")


@dataclass(frozen=True)
class WorkerSpec:
    """The planned Cloud Run container, as a local process."""

    service_name: str
    command: list[str]
    env: dict[str, str]  # exactly the planned envs
    # Emails the Cloud Run IAM layer lets through (run.invoker members); None
    # when that layer lets everybody through (invokerIamDisabled, allUsers).
    iam_invokers: tuple[str, ...] | None
    health_path: str  # the startup probe's path
    project: str  # what the metadata server would answer on Cloud Run

    def process_env(self, *, host: str, port: int, certs_url: str) -> dict[str, str]:
        """The worker's environment: planned envs plus the local wiring.

        TASKS_ALLOWED_INVOKERS stands in for Cloud Run's IAM check: exactly the
        run.invoker members, narrowed further if the program also sets an
        allow-list of its own (in the cloud both checks apply).
        """
        env = dict(self.env)
        planned = env.get(WORKER_ENV_ALLOWED_INVOKERS)
        app_list = (
            None if planned is None else tuple(e.strip() for e in planned.split(",") if e.strip())
        )
        allowed: tuple[str, ...] | None
        if self.iam_invokers is None:
            allowed = app_list
        elif app_list is None:
            allowed = self.iam_invokers
        else:
            allowed = tuple(e for e in self.iam_invokers if e in app_list)
        if allowed is None:
            # No IAM layer and no allow-list of the program's own: the check is off,
            # and the worker refuses an audience without invokers (fail closed).
            # A certs URL alone is refused too; the worker serves only `host`, loopback.
            env.pop(WORKER_ENV_ALLOWED_INVOKERS, None)
            env.pop(WORKER_ENV_AUDIENCE, None)
            env.pop(WORKER_ENV_CERTS_URL, None)
        else:
            env[WORKER_ENV_ALLOWED_INVOKERS] = ",".join(allowed) or NOBODY_INVOKER
            env[WORKER_ENV_CERTS_URL] = certs_url
        env[WORKER_ENV_PORT] = str(port)
        env["HOST"] = host
        # Cloud Run sets these for every container; handlers may log them.
        env.setdefault("K_SERVICE", self.service_name)
        env.setdefault("K_REVISION", f"{self.service_name}-local")
        env.setdefault("K_CONFIGURATION", self.service_name)
        # Stands in for the metadata server, which has no local counterpart (the
        # worker would otherwise wait for a DNS failure on metadata.google.internal).
        env.setdefault("GOOGLE_CLOUD_PROJECT", self.project)
        return env


def _local_command(
    container: Container, substitutions: list[str], problems: list[str]
) -> list[str]:
    commands = list(container.commands)
    if not commands:
        commands = list(IMAGE_COMMAND)
        substitutions.append(
            "worker command: the plan sets no container command, so the image CMD "
            "`python -m service` runs"
        )
    argv = commands + list(container.args)
    if argv[0] in {"python", "python3"} or argv[0].startswith("python3."):
        substitutions.append(
            f"worker command: `{argv[0]}` runs as this project's interpreter {sys.executable}"
        )
        argv[0] = sys.executable
    elif argv[0].startswith("/"):
        problems.append(
            f"the worker's container command {argv!r} names a path inside the image; "
            "locally the worker runs from source: use `python -m service` as the command"
        )
    return argv


def _planned_env(
    container: Container,
    environ: Mapping[str, str],
    substitutions: list[str],
    problems: list[str],
) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in container.envs:
        if item.from_secret:
            # Secret Manager has no local counterpart: the value comes from the shell
            # that runs `up`, so it is never written into config, the plan or a file.
            if item.name in environ:
                env[item.name] = environ[item.name]
                substitutions.append(
                    f"worker env {item.name}: Secret Manager secret {item.secret or '?'} in "
                    f"the cloud, ${item.name} of this shell here"
                )
            else:
                problems.append(
                    f"worker env {item.name} comes from Secret Manager secret "
                    f"{item.secret or '?'} in the cloud; locally export {item.name}=... in the "
                    "shell that runs `up` (the value never goes into config or the plan)"
                )
        elif item.name == WORKER_ENV_PORT:
            problems.append("worker env PORT is reserved by Cloud Run; remove it")
        else:
            env[item.name] = item.value
    return env


def worker_spec(
    service: PlannedService,
    *,
    invoker_emails: list[str],
    public_invoke: bool,
    project: str,
    substitutions: list[str],
    problems: list[str],
    environ: Mapping[str, str],
) -> WorkerSpec | None:
    """The worker for the planned service, or None (with the problem appended).
    `environ`: where values planned from Secret Manager come from locally."""
    if len(service.containers) != 1:
        problems.append(
            f"the Cloud Run service has {len(service.containers)} containers; the local stack "
            "runs exactly one (sidecars are not realised)"
        )
        return None
    container = service.containers[0]
    env = _planned_env(container, environ, substitutions, problems)
    command = _local_command(container, substitutions, problems)
    iam: tuple[str, ...] | None = tuple(invoker_emails)
    if service.invoker_iam_disabled or public_invoke:
        iam = None
        substitutions.append(
            "invoker IAM is open (invokerIamDisabled or a public member): the worker "
            "accepts requests without a token, as Cloud Run would"
        )
    limits = [f"{key} {value}" for key, value in service.limits]
    if container.sets_resources:
        limits.append("cpu/memory limits")
    if limits:
        substitutions.append("Cloud Run limits are not enforced locally: " + ", ".join(limits))
    return WorkerSpec(
        health_path=container.startup_probe_path or HEALTH_ROUTE,
        service_name=last_segment(service.name or service.computed_name or "worker"),
        command=command,
        env=env,
        iam_invokers=iam,
        project=project,
    )
