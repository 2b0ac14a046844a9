"""The text forms of single config values and the limits Google documents for them.

Durations ("30s", "5m", "1h"), Cloud Run CPU ("1", "0.5", "500m") and memory
("512Mi", "2Gi") parse here, and the name patterns of the resources the stack
creates (service, queue, service account, repository, project, region) are
defined here, each with the public page or proto field it comes from.

This module deliberately knows no config key, section or stack: it judges one
value at a time. Which key a value belongs to, and the checks across keys, are
`components.config`'s.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

from pydantic import BeforeValidator

from contract.durations import DurationError, parse_whole_seconds
from contract.limits import QUEUE_ID_MAX_CHARS

Ingress = Literal[
    "INGRESS_TRAFFIC_ALL",
    "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
]
"""`Service.ingress` values (`IngressTraffic`, google/cloud/run/v2/vendor_settings.proto)."""

# Cloud Run accepts fractional CPU between 0.08 and 1, and whole CPUs from this set
# (https://cloud.google.com/run/docs/configuring/services/cpu).
_WHOLE_CPUS = (1, 2, 4, 6, 8)
_MIN_CPU = Decimal("0.08")
# Memory limits, and the CPUs a memory size needs
# (https://cloud.google.com/run/docs/configuring/services/memory-limits).
MIN_MEMORY_MIB = 128
MAX_MEMORY_MIB = 32 * 1024
MEMORY_NEEDS_CPU = ((24 * 1024, 8), (16 * 1024, 6), (8 * 1024, 4), (4 * 1024, 2))
"""(memory above this many MiB, CPUs it needs), largest first."""
# https://cloud.google.com/run/docs/about-concurrency (at most 1000 per instance).
MAX_REQUEST_CONCURRENCY = 1000
# https://cloud.google.com/run/docs/configuring/max-instances
MAX_INSTANCES = 1000

_CPU_RE = re.compile(r"^(\d+(?:\.\d+)?)$|^(\d+)m$")
_MEMORY_RE = re.compile(r"^(\d+)(Mi|Gi|M|G)$")

# Cloud Run service names: lowercase letters, digits and hyphens, starting with a
# letter, not ending with a hyphen. 49 characters keeps "NAME-PROJECTNUMBER" within
# the 63-character DNS label of the deterministic run.app URL
# (https://cloud.google.com/run/docs/triggering/https-request, "Deterministic URL").
SERVICE_NAME_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,47}[a-z0-9])?$")
# QUEUE_ID: letters, digits or hyphens, at most 100 characters
# (`Queue.name`, google/cloud/tasks/v2/queue.proto).
QUEUE_NAME_RE = re.compile(rf"^[A-Za-z0-9-]{{1,{QUEUE_ID_MAX_CHARS}}}$")
# Service account ids are 6..30 characters; the prefix leaves room for "-enqueuer"
# (https://cloud.google.com/iam/docs/service-accounts-create).
ACCOUNT_PREFIX_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,19}[a-z0-9])?$")
# https://cloud.google.com/artifact-registry/docs/repositories/create-repos
REPOSITORY_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
# https://cloud.google.com/resource-manager/docs/creating-managing-projects
PROJECT_ID_RE = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
REGION_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")  # europe-west1 .. europe-west12
# IAM principal identifiers (https://cloud.google.com/iam/docs/principal-identifiers).
PRINCIPAL_RE = re.compile(r"^(serviceAccount|user|group|domain|principal|principalSet):\S+$")
# Cloud Run rejects an audience with a path
# (https://cloud.google.com/run/docs/configuring/custom-audiences).
CUSTOM_AUDIENCE_RE = re.compile(r"^https://[^/?#\s]+/?$")


def parse_duration(value: object) -> int:
    """Parse "30s", "5m", "1h" or a bare number of seconds into whole seconds
    (`contract.durations`, the one parser every part uses).

    Cloud Tasks truncates durations to whole seconds (`RetryConfig`,
    google/cloud/tasks/v2/queue.proto), so fractions are refused instead of
    silently changed.
    """
    try:
        return parse_whole_seconds(value, what="")
    except DurationError as exc:
        raise ValueError(str(exc)) from None


Seconds = Annotated[int, BeforeValidator(parse_duration)]
"""A config duration, held as whole seconds."""


def parse_cpu(value: str) -> Decimal:
    """CPU limit in Cloud Run's forms: "1", "2", "0.5", "500m"."""
    match = _CPU_RE.match(value.strip())
    if match is None:
        raise ValueError('expected a CPU count like "1", "2", "0.5" or millicores like "500m"')
    try:
        cpu = Decimal(match.group(1)) if match.group(1) else Decimal(match.group(2)) / 1000
    except InvalidOperation as exc:  # the regex makes this unreachable; kept for clarity
        raise ValueError(f"cannot parse CPU {value!r}") from exc
    if cpu < _MIN_CPU or (cpu > 1 and cpu not in _WHOLE_CPUS):
        raise ValueError(
            "Cloud Run accepts a fractional CPU between 0.08 and 1, or one of 1, 2, 4, 6, 8"
        )
    return cpu


def parse_memory_mib(value: str) -> int:
    """Memory limit in Cloud Run's forms ("512Mi", "1Gi", "1G") as MiB."""
    match = _MEMORY_RE.match(value.strip())
    if match is None:
        raise ValueError('expected a memory size like "512Mi" or "2Gi"')
    amount, unit = int(match.group(1)), match.group(2)
    # Cloud Run reads M and G as powers of ten, Mi and Gi as powers of two.
    bytes_per_unit = {"Mi": 1024**2, "Gi": 1024**3, "M": 1000**2, "G": 1000**3}[unit]
    mib = amount * bytes_per_unit // 1024**2
    if not MIN_MEMORY_MIB <= mib <= MAX_MEMORY_MIB:
        raise ValueError("Cloud Run accepts memory from 128Mi to 32Gi")
    return mib
