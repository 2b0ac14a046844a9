"""The Pulumi program: read the stack config, build the pipeline, export its outputs.

Config is validated before any resource is declared (components.config); the
output names come from contract.names, where the enqueue helper, the local
stack and the smoke test read them too.
"""

import pulumi

from components import TaskPipeline, TaskPipelineArgs, load_config

config = load_config()
pipeline = TaskPipeline("tasks", TaskPipelineArgs(config=config, stack=pulumi.get_stack()))
for output_name, value in pipeline.outputs.items():
    pulumi.export(output_name, value)
