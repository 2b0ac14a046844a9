"""A queue's default min_backoff (0.1 s, Google's) survives what round-trips it.

GetQueue answers ``minBackoff: "0.100s"``; gcloud's ``queues update`` and a client's
``update_queue(queue=get_queue(...))`` send it back, and a ``--data`` restart reads it
again. Truncating it to whole seconds there (the rule for values a caller sets) made
it 0 s: a failing task then used all its attempts in a tenth of a second.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from google.cloud import tasks_v2
from google.protobuf import field_mask_pb2

from emulator.testing import EmulatorProcess

pytestmark = pytest.mark.integration

PARENT = "projects/p/locations/us-central1"
DEFAULT_MIN_BACKOFF_NS = 100_000_000


def _min_backoff_ns(queue: tasks_v2.Queue) -> int:
    return int(tasks_v2.Queue.pb(queue).retry_config.min_backoff.ToNanoseconds())


def test_the_default_min_backoff_survives_updates_and_restarts(tmp_path: Path) -> None:
    name = f"{PARENT}/queues/q"
    with EmulatorProcess(tmp_path / "emu.db") as emu:
        client = emu.client()
        created = client.create_queue(parent=PARENT, queue={"name": name})
        assert _min_backoff_ns(created) == DEFAULT_MIN_BACKOFF_NS
        masked = client.update_queue(
            queue={"name": name, "retry_config": {"max_attempts": 7}},
            update_mask=field_mask_pb2.FieldMask(paths=["retry_config.max_attempts"]),
        )
        assert _min_backoff_ns(masked) == DEFAULT_MIN_BACKOFF_NS
        assert client.update_queue(queue=client.get_queue(name=name)).retry_config.max_attempts == 7
        assert _min_backoff_ns(client.get_queue(name=name)) == DEFAULT_MIN_BACKOFF_NS
        # A value the caller sets is still truncated to whole seconds, as queue.proto says.
        other = client.create_queue(
            parent=PARENT,
            queue={"name": f"{PARENT}/queues/r", "retry_config": {"min_backoff": "1.5s"}},
        )
        assert _min_backoff_ns(other) == 1_000_000_000
    with EmulatorProcess(tmp_path / "emu.db") as emu:
        assert _min_backoff_ns(emu.client().get_queue(name=name)) == DEFAULT_MIN_BACKOFF_NS
        assert _min_backoff_ns(emu.client("rest").get_queue(name=name)) == DEFAULT_MIN_BACKOFF_NS
