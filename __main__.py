"""The Pulumi program: read the stack config, build the pipeline, export its outputs.

Config is validated before any resource is declared (components.loading); the
output names come from contract.names, where the enqueue helper, the local
stack and the smoke test read them too. Deliberately nothing else: no resource,
no config rule and no default lives here.
"""

import pulumi

from components import TaskPipeline, load_config

config = load_config()
# Risks the config cannot rule out (components.config.PipelineConfig.capacity_warnings):
# `pulumi preview` prints them, and so does `python -m plan`.
for warning in config.capacity_warnings():
    pulumi.log.warn(warning)
pipeline = TaskPipeline("tasks", config, stack=pulumi.get_stack())
for output_name, value in pipeline.outputs.items():
    pulumi.export(output_name, value)
