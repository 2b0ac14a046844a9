"""Cloud Tasks and Cloud Run limits, shared by config validation, the enqueue helper
and the emulator so the three reject the same things.

Sources: https://cloud.google.com/tasks/docs/quotas and the field comments of
google/cloud/tasks/v2/{cloudtasks,queue,task,target}.proto; Cloud Run's at
https://cloud.google.com/run/quotas.
"""

from typing import Final

MAX_TASK_BYTES: Final = 1024 * 1024  # quotas page: reject above 1 MiB
WARN_TASK_BYTES: Final = 100 * 1000  # API reference says 100 KB: warn above it
MAX_HEADERS_BYTES: Final = 80 * 1000  # target.proto: "< 80 KB"
MAX_URL_CHARS: Final = 2083

TASK_ID_MAX_CHARS: Final = 500
TASK_ID_PATTERN: Final = r"[A-Za-z0-9_-]{1,500}"
QUEUE_ID_MAX_CHARS: Final = 100
QUEUE_ID_PATTERN: Final = r"[A-Za-z0-9-]{1,100}"

MIN_DISPATCH_DEADLINE_S: Final = 15
MAX_DISPATCH_DEADLINE_S: Final = 30 * 60
DEFAULT_DISPATCH_DEADLINE_S: Final = 10 * 60

MAX_SCHEDULE_AHEAD_S: Final = 30 * 24 * 3600

MAX_DISPATCHES_PER_SECOND: Final = 500.0
MAX_CONCURRENT_DISPATCHES: Final = 5000

CLOUD_RUN_MAX_REQUEST_TIMEOUT_S: Final = 3600
CLOUD_RUN_DEFAULT_REQUEST_TIMEOUT_S: Final = 300

# A named task stays reserved after it ran or was deleted (~1 h per the proto).
DEFAULT_TOMBSTONE_S: Final = 3600
# A deleted queue's name may stay unusable "for a tombstone window of up to 3 days"
# (queues.delete docs), CreateQueue meanwhile appearing to succeed. The emulator's
# window is an option (--queue-tombstone-seconds) with a short default, so tests
# can see the behaviour without waiting days.
GOOGLE_MAX_QUEUE_TOMBSTONE_S: Final = 3 * 24 * 3600
DEFAULT_QUEUE_TOMBSTONE_S: Final = 5
