"""DeadLetterBucket: the Cloud Storage bucket where the worker keeps every dead task.

Cloud Tasks keeps no dead-letter queue: a task whose retries run out is deleted
with its body. The worker records such a task (and every task that can never
succeed) as one JSON object in this bucket (`service.gcs_dead_letters`), so:

- the bucket: named `<project>-<service>-dead-letters` (`bucket_name`, known
  before it exists, so the plan and the local stack know it too), in the stack's
  region, uniform bucket-level access (IAM only, no object ACLs), public access
  prevention enforced, a retention policy of `dead_letter_retention_days` (no
  letter can be deleted or replaced before then) and a lifecycle rule deleting
  letters at that age; protected like the service and the queue;
- `roles/storage.objectCreator` for the runtime account on this bucket only: it
  can add letters, never read, list, replace or delete them;
- `roles/storage.objectViewer` on this bucket only for each of `dead_letter_readers`
  and `operators` (who read and replay dead letters with `python -m ops`).

`retry_policies_env` is the other half of final-attempt capture: the worker's
`TASKS_RETRY_POLICIES`, from the same `{queue key: policy}` the pipeline builds
once and the queues are created from.

This component deliberately grants nothing project-wide and creates no account
(bootstrap/ creates the runtime account; the pipeline passes its member in).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Final

import pulumi
import pulumi_gcp as gcp

from components.config import DeadLetterConfig, GcpConfig
from components.identities import member_slug
from contract.resources import STORAGE_OBJECT_CREATOR_ROLE, STORAGE_OBJECT_VIEWER_ROLE
from contract.retry_policy import RetryPolicy, dump_policies

BUCKET_SUFFIX: Final = "-dead-letters"
MAX_BUCKET_CHARS: Final = 63  # https://cloud.google.com/storage/docs/buckets#naming
SECONDS_PER_DAY: Final = 86_400


def bucket_name(project: str, service_name: str) -> str:
    """`<project>-<service>-dead-letters`; the service part hashed when too long.

    Bucket names are global: the project id makes it unique across projects, the
    service name across the stacks of one project (each stack has its own service).
    """
    name = f"{project}-{service_name}{BUCKET_SUFFIX}"
    if len(name) <= MAX_BUCKET_CHARS:
        return name
    digest = hashlib.sha256(service_name.encode()).hexdigest()[:8]
    return f"{project}-{digest}{BUCKET_SUFFIX}"


def retry_policies_env(policies: Mapping[str, RetryPolicy]) -> str:
    """The worker's `TASKS_RETRY_POLICIES` value for `{queue key: policy}`."""
    return dump_policies(policies)


class DeadLetterBucket(pulumi.ComponentResource):
    """The dead-letter bucket and its two kinds of grant."""

    bucket: gcp.storage.Bucket
    name: pulumi.Output[str]
    creator_grant: gcp.storage.BucketIAMMember
    reader_grants: list[gcp.storage.BucketIAMMember]

    def __init__(
        self,
        name: str,
        config: DeadLetterConfig,
        *,
        gcp_config: GcpConfig,
        service_name: str,
        runtime_member: pulumi.Input[str],
        protect: bool,
        operators: Sequence[str] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`operators`: who runs `python -m ops`; they read dead letters as readers do."""
        super().__init__("tasks:index:DeadLetterBucket", name, None, opts)
        days = config.dead_letter_retention_days
        self.bucket = gcp.storage.Bucket(
            f"{name}-bucket",
            name=bucket_name(gcp_config.project, service_name),
            project=gcp_config.project,
            location=gcp_config.region,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            retention_policy=gcp.storage.BucketRetentionPolicyArgs(
                retention_period=str(days * SECONDS_PER_DAY)
            ),
            lifecycle_rules=[
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=days),
                )
            ],
            # Dead letters are the only copy of those tasks: never delete them with it.
            force_destroy=False,
            opts=pulumi.ResourceOptions(parent=self, protect=protect),
        )
        self.name = self.bucket.name
        self.creator_grant = gcp.storage.BucketIAMMember(
            f"{name}-runtime-creator",
            bucket=self.bucket.name,
            role=STORAGE_OBJECT_CREATOR_ROLE,
            member=runtime_member,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.reader_grants = [
            gcp.storage.BucketIAMMember(
                f"{name}-reader-{member_slug(member)}",
                bucket=self.bucket.name,
                role=STORAGE_OBJECT_VIEWER_ROLE,
                member=member,
                opts=pulumi.ResourceOptions(parent=self),
            )
            # Each principal once, readers first (resource names come from the member).
            for member in dict.fromkeys((*config.dead_letter_readers, *operators))
        ]
        self.register_outputs({"name": self.name})
