"""The full resource inventory of every stack against its committed snapshot.

After an intended change to the program or a stack file, update the snapshots
with `make snapshots` (`python -m plan snapshot --all`) and review the diff.
"""

from __future__ import annotations

from collections import Counter

import pytest

from contract.resources import SECRET_IAM_MEMBER_TYPE
from plan.diff import diff_plans, render_diff
from plan.model import Plan
from plan.snapshots import load_snapshot
from plan.stack_config import available_stacks

STACKS = available_stacks()


@pytest.mark.parametrize("stack", STACKS)
def test_plan_matches_the_committed_snapshot(all_plans: dict[str, Plan], stack: str) -> None:
    snapshot = load_snapshot(stack)
    diff = diff_plans(snapshot, all_plans[stack])
    assert diff.empty, render_diff(diff, stack) + "\nIf this change is intended: make snapshots"
    # The resource outputs the mocks computed are part of the snapshot too.
    assert [r.outputs for r in all_plans[stack].resources] == [
        r.outputs for r in snapshot.resources
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_inventory_counts(all_plans: dict[str, Plan], stack: str) -> None:
    counts = Counter(r.type for r in all_plans[stack].resources)
    # Your own worker secrets add one grant each.
    secrets = {r.inputs["secretId"] for r in all_plans[stack].of_type(SECRET_IAM_MEMBER_TYPE)}
    if secrets:
        counts.subtract({SECRET_IAM_MEMBER_TYPE: len(secrets)})
        counts = +counts
    # The APIs, the Cloud Tasks agent, the accounts and the repository are bootstrap/'s.
    assert counts == {
        "tasks:index:TaskPipeline": 1,
        "tasks:index:Identities": 1,
        "tasks:index:TaskQueue": 1,
        "tasks:index:WorkerService": 1,
        "tasks:index:DeadLetterBucket": 1,
        # actAs on the invoker for the one enqueuer (prod names its backend identity).
        "gcp:serviceaccount/iAMMember:IAMMember": 1,
        "gcp:cloudtasks/queue:Queue": 1,
        "gcp:cloudtasks/queueIamMember:QueueIamMember": 1,
        "docker-build:index:Image": 1,
        "gcp:cloudrunv2/service:Service": 1,
        "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": 1,
        # Operations: 7 alert policies for the queue, 2 for the worker, two log-based
        # metrics, the dashboard and one email channel per stack (alert_emails).
        "tasks:index:Operations": 1,
        "gcp:monitoring/alertPolicy:AlertPolicy": 9,
        "gcp:logging/metric:Metric": 2,
        "gcp:monitoring/dashboard:Dashboard": 1,
        "gcp:monitoring/notificationChannel:NotificationChannel": 1,
        # The dead-letter bucket and the runtime account's objectCreator on it.
        "gcp:storage/bucket:Bucket": 1,
        "gcp:storage/bucketIAMMember:BucketIAMMember": 1,
    }
