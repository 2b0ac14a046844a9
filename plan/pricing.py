"""Every price the cost preview uses, with where it was read and when: the one place to
update when Google changes a price.

Prices in USD, list prices of Tier 1 regions (europe-west1, us-central1, ...), read
on `PRICES_READ_ON` through the project's documentation search; other regions and
committed-use discounts differ (check the pages before relying on a figure). Free
tiers are per billing account, not per project: the preview applies them to each
stack as if it were alone on its billing account, and says so.

Besides prices, the few sizes the preview must assume (the worker image, a log
line) are here too, each marked as an assumption. Standard library only.
"""

from __future__ import annotations

from typing import Final

PRICES_READ_ON: Final = "2026-12-04"

SECONDS_PER_MONTH: Final = 730 * 3600
"""Google's pricing calculator month: 730 hours."""
DAYS_PER_MONTH: Final = 730 / 24

# --- Cloud Tasks: https://cloud.google.com/tasks/pricing -----------------------------------
CLOUD_TASKS_PRICING_URL: Final = "https://cloud.google.com/tasks/pricing"
TASKS_FREE_OPERATIONS: Final = 1_000_000
"""Billable operations a month that are free ("First 1 million: Free")."""
TASKS_USD_PER_MILLION_OPERATIONS: Final = 0.40
"""Per million billable operations, up to 5 billion a month."""
TASKS_CHUNK_BYTES: Final = 32 * 1024
""""Tasks are chunked by size (32KB)": a 96 KB task is 3 billable operations."""
TASKS_OPERATIONS_PER_TASK: Final = 2
"""A billable operation is "an API call or push delivery attempt": CreateTask and one
delivery per task that succeeds the first time (each retry adds one)."""

# --- Cloud Run: https://cloud.google.com/run/pricing (services, request-based billing) -----
CLOUD_RUN_PRICING_URL: Final = "https://cloud.google.com/run/pricing"
RUN_USD_PER_VCPU_SECOND: Final = 0.000024
RUN_USD_PER_GIB_SECOND: Final = 0.0000025
RUN_USD_PER_MILLION_REQUESTS: Final = 0.40
RUN_FREE_VCPU_SECONDS: Final = 180_000
RUN_FREE_GIB_SECONDS: Final = 360_000
RUN_FREE_REQUESTS: Final = 2_000_000
RUN_IDLE_USD_PER_VCPU_SECOND: Final = 0.0000025
"""An idle instance kept by `min_instances` (request-based billing). Unlike the active rates
and free tiers above, the idle rows of the page could not be read in full through the
documentation search on `PRICES_READ_ON`: this is the page's Tier 1 idle rate as last
published, to confirm on the page before relying on the min_instances line."""
RUN_IDLE_USD_PER_GIB_SECOND: Final = 0.0000025
RUN_BILLING_GRANULARITY_S: Final = 0.1
"""Usage is "rounded up to the nearest 100 millisecond"."""

# --- Artifact Registry: https://cloud.google.com/artifact-registry/pricing -----------------
ARTIFACT_REGISTRY_PRICING_URL: Final = "https://cloud.google.com/artifact-registry/pricing"
REGISTRY_FREE_GB: Final = 0.5
REGISTRY_USD_PER_GB_MONTH: Final = 0.10
WORKER_IMAGE_GB: Final = 0.25
"""Assumption: the worker image (python slim + requirements); shared layers are stored once,
so the images bootstrap's cleanup policy keeps count roughly once plus their own layers."""

# --- Cloud Logging: https://cloud.google.com/stackdriver/pricing ----------------------------
CLOUD_LOGGING_PRICING_URL: Final = "https://cloud.google.com/stackdriver/pricing"
LOGGING_FREE_GIB: Final = 50
"""First 50 GiB of ingested logs per project per month."""
LOGGING_USD_PER_GIB: Final = 0.50
WORKER_LOG_BYTES_PER_TASK: Final = 1_500
"""Assumption: the worker's one JSON line per task plus Cloud Run's request log entry."""
TASKS_LOG_BYTES_PER_TASK: Final = 2_000
"""Assumption: Cloud Tasks' task_operations_log entries of one task (create, dispatch,
response), scaled by the queue's `log_sampling_ratio`."""

SOURCES: Final = {
    "Cloud Tasks": CLOUD_TASKS_PRICING_URL,
    "Cloud Run": CLOUD_RUN_PRICING_URL,
    "Artifact Registry": ARTIFACT_REGISTRY_PRICING_URL,
    "Cloud Logging": CLOUD_LOGGING_PRICING_URL,
}
