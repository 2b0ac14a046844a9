"""Pulumi components of the Cloud Tasks -> private Cloud Run pipeline.

`TaskPipeline` composes `Platform`, `Identities`, `WorkerService` and
`TaskQueue`; `components.config.load_config()` parses the stack config once.
Nothing here declares resources at import time.
"""

from components.config import ConfigError, PipelineConfig, load_config, parse_config
from components.identities import Identities, IdentitiesArgs
from components.pipeline import TaskPipeline, TaskPipelineArgs
from components.platform import Platform, PlatformArgs
from components.queue import TaskQueue, TaskQueueArgs
from components.worker import WorkerService, WorkerServiceArgs

__all__ = [
    "ConfigError",
    "Identities",
    "IdentitiesArgs",
    "PipelineConfig",
    "Platform",
    "PlatformArgs",
    "TaskPipeline",
    "TaskPipelineArgs",
    "TaskQueue",
    "TaskQueueArgs",
    "WorkerService",
    "WorkerServiceArgs",
    "load_config",
    "parse_config",
]
