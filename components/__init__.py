"""Pulumi components of the Cloud Tasks -> private Cloud Run pipeline.

`components.loading.load_config()` reads the stack config once into a
`PipelineConfig` (`components.config`), whose sections each component takes as
is: `TaskPipeline` hands every component the `gcp` section,
`Identities` the `identities` section, `WorkerService` the `worker` section,
`TaskQueue` the `queue` section (one `TaskQueue` per queue key of the `routing`
section's queues, each with its own `QueueConfig`), `DeadLetterBucket` the
`dead_letters` section, `Operations` (components.monitoring) the `operations`
section and every queue, plus the outputs of the components before it.
Nothing here declares resources at import time.
"""

from components.config import (
    ConfigError,
    DeadLetterConfig,
    GcpConfig,
    IdentitiesConfig,
    PipelineConfig,
    QueueConfig,
    RoutingConfig,
    WorkerConfig,
)
from components.dead_letters import DeadLetterBucket
from components.identities import Identities
from components.loading import load_config, parse_config
from components.pipeline import TaskPipeline
from components.queue import TaskQueue
from components.worker import WorkerService

__all__ = [
    "ConfigError",
    "DeadLetterBucket",
    "DeadLetterConfig",
    "GcpConfig",
    "Identities",
    "IdentitiesConfig",
    "PipelineConfig",
    "QueueConfig",
    "RoutingConfig",
    "TaskPipeline",
    "TaskQueue",
    "WorkerConfig",
    "WorkerService",
    "load_config",
    "parse_config",
]
