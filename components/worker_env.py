"""The worker's own environment from stack config: plain variables, secrets by
reference, and the task modules it loads. One reading, used by the program and,
through the plan, by the local stack.

Stack config holds three lists (Pulumi project config has no portable map type):

- ``worker_env``: ``NAME=value`` plain settings (``ENRICH_BACKEND_URL=https://...``);
- ``worker_secrets``: ``NAME=SECRET`` or ``NAME=SECRET:VERSION``: the variable's
  value comes from Secret Manager secret SECRET of the stack's project (version
  ``latest`` by default), resolved by Cloud Run when an instance starts
  (https://cloud.google.com/run/docs/configuring/services/secrets). The value is
  never in the stack config, the plan or the state;
- ``task_modules``: import paths of your task modules (``myteam.tasks``), set as
  ``TASKS_EXTRA_MODULES``. Each must be inside the image the program builds:
  :func:`missing_from_image` reads the Dockerfile and its ignore file, so a
  module the image would lack is a config error, not a worker that stops at
  start in the cloud.

Deliberately not here: creating resources (`components.worker` sets the envs
and grants the runtime account access to each secret), and the worker's own
reading of these variables (`service.config`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from contract.names import (
    WORKER_ENV_ALLOWED_INVOKERS,
    WORKER_ENV_AUDIENCE,
    WORKER_ENV_CERTS_URL,
    WORKER_ENV_DEAD_LETTER_BUCKET,
    WORKER_ENV_EXTRA_MODULES,
    WORKER_ENV_PORT,
    WORKER_ENV_QUEUES,
    WORKER_ENV_RETRY_POLICIES,
    WORKER_ENV_ROUTES,
    WORKER_ENV_TRACE_EXPORT,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The image's build context: the repository root, where Pulumi runs the program."""
DOCKERFILE = "service/Dockerfile"
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
MODULE_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
# Secret ids: letters, digits, '-' and '_', at most 255 characters
# (https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets/create).
SECRET_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
SECRET_VERSION_RE = re.compile(r"^(latest|[1-9][0-9]*)$")
# Names that look like credentials must come from Secret Manager, not plain config.
SECRET_LOOKING_RE = re.compile(
    r"SECRET|PASSWORD|PASSWD|TOKEN|PRIVATE_KEY|API_KEY|CREDENTIAL", re.IGNORECASE
)
# Set by Cloud Run (https://cloud.google.com/run/docs/container-contract#env-vars)
# or by the program itself (the worker's auth and its module list).
RESERVED_ENV = frozenset(
    {
        WORKER_ENV_PORT,
        "K_SERVICE",
        "K_REVISION",
        "K_CONFIGURATION",
        WORKER_ENV_AUDIENCE,
        WORKER_ENV_ALLOWED_INVOKERS,
        WORKER_ENV_CERTS_URL,
        WORKER_ENV_EXTRA_MODULES,
        WORKER_ENV_DEAD_LETTER_BUCKET,
        WORKER_ENV_QUEUES,
        WORKER_ENV_RETRY_POLICIES,
        WORKER_ENV_ROUTES,
        WORKER_ENV_TRACE_EXPORT,
    }
)


@dataclass(frozen=True)
class SecretRef:
    """An environment variable whose value is a Secret Manager secret version."""

    env: str
    secret: str
    version: str = "latest"


def _env_name(name: str) -> str:
    if not ENV_NAME_RE.match(name):
        raise ValueError(f"{name!r} is not an environment variable name (letters, digits, _)")
    if name in RESERVED_ENV:
        hint = " (list modules in task_modules)" if name == WORKER_ENV_EXTRA_MODULES else ""
        raise ValueError(f"{name} is set by Cloud Run or by the program itself{hint}")
    return name


def parse_env_entry(entry: str) -> tuple[str, str]:
    """``NAME=value`` -> (NAME, value); names that look like credentials are refused."""
    name, sep, value = entry.partition("=")
    if not sep:
        raise ValueError(f"{entry!r} must look like NAME=value")
    _env_name(name)
    if SECRET_LOOKING_RE.search(name):
        raise ValueError(
            f"{name} looks like a credential: put it in Secret Manager and list it in "
            f"worker_secrets as {name}=SECRET_ID, never as a plain value"
        )
    return name, value


def parse_secret_entry(entry: str) -> SecretRef:
    """``NAME=SECRET`` or ``NAME=SECRET:VERSION`` -> SecretRef."""
    name, sep, ref = entry.partition("=")
    if not sep:
        raise ValueError(f"{entry!r} must look like NAME=SECRET_ID or NAME=SECRET_ID:VERSION")
    _env_name(name)
    secret, _, version = ref.partition(":")
    if not SECRET_ID_RE.match(secret):
        raise ValueError(
            f"{secret!r} is not a Secret Manager secret id (letters, digits, '-', '_'; the "
            "secret must be in the stack's project)"
        )
    if version and not SECRET_VERSION_RE.match(version):
        raise ValueError(f"secret version {version!r} must be 'latest' or a version number")
    return SecretRef(env=name, secret=secret, version=version or "latest")


def check_module(name: str) -> str:
    if not MODULE_RE.match(name):
        raise ValueError(f"{name!r} is not a Python import path like myteam.tasks")
    return name


def duplicate_names(env: Sequence[str], secrets: Sequence[str]) -> list[str]:
    """Variable names set more than once across worker_env and worker_secrets."""
    names = [e.partition("=")[0] for e in env] + [s.partition("=")[0] for s in secrets]
    return sorted({n for n in names if names.count(n) > 1})


# --- what the image holds ---------------------------------------------------------------

_COPY_RE = re.compile(r"^\s*COPY\s+(?!--from)(?:--\S+\s+)*(\S+)/?\s+\S+\s*$", re.IGNORECASE)


def image_packages(root: Path, dockerfile: str) -> set[str]:
    """Top-level directories the image's Dockerfile copies from the build context and
    its `<Dockerfile>.dockerignore` lets through (BuildKit reads that file for it)."""
    docker_path = root / dockerfile
    copied = {
        match.group(1).rstrip("/")
        for line in docker_path.read_text(encoding="utf-8").splitlines()
        if (match := _COPY_RE.match(line))
    }
    ignore = Path(str(docker_path) + ".dockerignore")
    rules = [
        line.strip()
        for line in (ignore.read_text(encoding="utf-8").splitlines() if ignore.exists() else [])
        if line.strip() and not line.startswith("#")
    ]

    def sent(directory: str) -> bool:
        kept = True
        for rule in rules:  # the last matching rule wins, as in .dockerignore
            negated = rule.startswith("!")
            pattern = rule.lstrip("!").rstrip("/")
            if fnmatch(directory, pattern):
                kept = negated
        return kept

    return {d for d in copied if "/" not in d and sent(d)}


def module_exists(module: str, root: Path) -> bool:
    """True when module's file is under root, where the worker (and its image) loads it."""
    parts = module.split(".")
    base = root.joinpath(*parts)
    return base.with_suffix(".py").is_file() or base.is_dir()


def missing_from_image(modules: Sequence[str], root: Path, dockerfile: str) -> list[str]:
    """The task modules whose top-level package the built image would not contain."""
    packages = image_packages(root, dockerfile)
    return [m for m in modules if m.split(".")[0] not in packages]
