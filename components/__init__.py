"""Pulumi components of the Cloud Tasks -> private Cloud Run pipeline.

`components.loading.load_config()` reads the stack config once into a
`PipelineConfig` (`components.config`), whose sections each component takes as
is: `TaskPipeline` hands every component the `gcp` section,
`Identities` the `identities` section, `WorkerService` the `worker` section and
`TaskQueue` the `queue` section (one `TaskQueue` per queue key of the `routing`
section's queues, each with its own `QueueConfig`), `Operations`
(components.monitoring) the `operations` section and every queue, plus the
outputs of the components before it.
Nothing here declares resources at import time.
"""

from components.config import (
    ConfigError,
    GcpConfig,
    IdentitiesConfig,
    PipelineConfig,
    QueueConfig,
    RoutingConfig,
    WorkerConfig,
)
from components.identities import Identities
from components.loading import load_config, parse_config
from components.pipeline import TaskPipeline
from components.queue import TaskQueue
from components.worker import WorkerService

__all__ = [
    "ConfigError",
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
