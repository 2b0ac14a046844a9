"""Stack output names, environment variable names and HTTP header names."""

from typing import Final

# --- Stack outputs (docs/architecture.md, "Contracts") ---------------------------
OUTPUT_PROJECT: Final = "project"
OUTPUT_LOCATION: Final = "location"
OUTPUT_QUEUE: Final = "queue"  # projects/P/locations/L/queues/Q
OUTPUT_SERVICE_URL: Final = "service_url"
OUTPUT_AUDIENCE: Final = "audience"
OUTPUT_INVOKER_EMAIL: Final = "invoker_email"

STACK_OUTPUT_KEYS: Final = (
    OUTPUT_PROJECT,
    OUTPUT_LOCATION,
    OUTPUT_QUEUE,
    OUTPUT_SERVICE_URL,
    OUTPUT_AUDIENCE,
    OUTPUT_INVOKER_EMAIL,
)

# Optional stack outputs: readers use them when present (older stacks lack them).
OUTPUT_DISPATCH_DEADLINE: Final = "dispatch_deadline"  # e.g. "60s": the tasks' deadline

# Several queues per stack (issue "several queues"): `queue` stays the default queue's path.
OUTPUT_QUEUES: Final = "queues"  # {queue key: projects/P/locations/L/queues/Q}
OUTPUT_ROUTES: Final = "routes"  # {task type: queue key}; unrouted types go to "default"
OUTPUT_DISPATCH_DEADLINES: Final = "dispatch_deadlines"  # {queue key: "60s"}

# Durable dead letters (issue "no task lost"): the bucket every dead task is written to.
OUTPUT_DEAD_LETTER_BUCKET: Final = "dead_letter_bucket"

OPTIONAL_STACK_OUTPUT_KEYS: Final = (OUTPUT_DISPATCH_DEADLINE, OUTPUT_DEAD_LETTER_BUCKET)
# The same outputs as JSON objects (not strings): every stack of this version exports them;
# readers treat them as optional, like the keys above.
MAP_STACK_OUTPUT_KEYS: Final = (OUTPUT_QUEUES, OUTPUT_ROUTES, OUTPUT_DISPATCH_DEADLINES)

# Extra keys in .devstack/<stack>/outputs.json
OUTPUT_EMULATOR_HOST: Final = "emulator_host"  # host:port of the emulator's gRPC API
OUTPUT_EMULATOR_URL: Final = "emulator_url"  # base URL of its REST API and OIDC issuer
# The local Cloud Storage emulator's URL, the value for STORAGE_EMULATOR_HOST.
OUTPUT_STORAGE_EMULATOR_HOST: Final = "storage_emulator_host"

LOCAL_OUTPUT_KEYS: Final = (
    *STACK_OUTPUT_KEYS,
    *OPTIONAL_STACK_OUTPUT_KEYS,
    *MAP_STACK_OUTPUT_KEYS,
    OUTPUT_EMULATOR_HOST,
    OUTPUT_EMULATOR_URL,
    OUTPUT_STORAGE_EMULATOR_HOST,
)

# --- Environment ----------------------------------------------------------------
# host:port of a Cloud Tasks emulator's gRPC API, like PUBSUB_EMULATOR_HOST.
EMULATOR_HOST_ENV: Final = "CLOUD_TASKS_EMULATOR_HOST"

# Environment of the worker container (set by the Pulumi program, read by service/).
WORKER_ENV_AUDIENCE: Final = "TASKS_AUDIENCE"  # the OIDC audience the worker accepts
WORKER_ENV_ALLOWED_INVOKERS: Final = "TASKS_ALLOWED_INVOKERS"  # comma-separated emails
WORKER_ENV_CERTS_URL: Final = "TASKS_CERTS_URL"  # PEM certs URL; Google's by default
WORKER_ENV_PORT: Final = "PORT"
WORKER_ENV_EXTRA_MODULES: Final = "TASKS_EXTRA_MODULES"  # comma-separated task modules
# JSON objects: {queue key: queue id (the last segment of its path)} and {task type: queue
# key}. The worker maps X-CloudTasks-QueueName to a key and refuses a misrouted task.
WORKER_ENV_QUEUES: Final = "TASKS_QUEUES"
WORKER_ENV_ROUTES: Final = "TASKS_ROUTES"
# JSON object {queue key: the queue's retry config (max_attempts, min_backoff, max_backoff,
# max_doublings, max_retry_duration)}: the worker knows when an attempt is the last.
WORKER_ENV_RETRY_POLICIES: Final = "TASKS_RETRY_POLICIES"
WORKER_ENV_DEAD_LETTER_BUCKET: Final = "TASKS_DEAD_LETTER_BUCKET"  # bucket name
# OTLP base URL the worker exports its own spans to (service.span_export); unset = none.
WORKER_ENV_TRACE_EXPORT: Final = "TASKS_TRACE_EXPORT"
CLOUD_TRACE_OTLP_URL: Final = "https://telemetry.googleapis.com"  # Cloud Trace's OTLP API

GOOGLE_CERTS_URL: Final = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUER: Final = "https://accounts.google.com"

# --- Worker routes ----------------------------------------------------------------
TASK_ROUTE_PREFIX: Final = "/tasks/"  # POST {service_url}/tasks/{type}
HEALTH_ROUTE: Final = "/healthz"
SMOKE_TASK_TYPE: Final = "smoke"

# --- Headers Cloud Tasks sets on HTTP-target requests ---------------------------------
# https://cloud.google.com/tasks/docs/creating-http-target-tasks#handler
HEADER_QUEUE_NAME: Final = "X-CloudTasks-QueueName"
HEADER_TASK_NAME: Final = "X-CloudTasks-TaskName"
HEADER_RETRY_COUNT: Final = "X-CloudTasks-TaskRetryCount"
HEADER_EXECUTION_COUNT: Final = "X-CloudTasks-TaskExecutionCount"
HEADER_ETA: Final = "X-CloudTasks-TaskETA"
HEADER_PREVIOUS_RESPONSE: Final = "X-CloudTasks-TaskPreviousResponse"
HEADER_RETRY_REASON: Final = "X-CloudTasks-TaskRetryReason"
HEADER_TRACE_CONTEXT: Final = "X-Cloud-Trace-Context"
HEADER_TRACEPARENT: Final = "traceparent"  # W3C Trace Context (contract.tracing)
# Set by the enqueue helper when the caller overrides a task's route (`--queue KEY`): the
# worker then accepts the task on that queue instead of refusing it as misrouted.
HEADER_QUEUE_OVERRIDE: Final = "X-Tasks-Queue-Override"
CLOUD_TASKS_USER_AGENT: Final = "Google-Cloud-Tasks"
