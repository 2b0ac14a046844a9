"""Each component takes its validated config section as is, not a copy of its fields.

A key added to a section reaches the component that takes the section with no
other edit; these tests pin that shape (and that no key sits in two sections),
so an Args class re-declaring config fields cannot come back unnoticed.
"""

from __future__ import annotations

import inspect

import pulumi
import pytest
from pydantic import BaseModel

from components import (
    DeadLetterBucket,
    DeadLetterConfig,
    GcpConfig,
    Identities,
    IdentitiesConfig,
    PipelineConfig,
    QueueConfig,
    RoutingConfig,
    TaskPipeline,
    TaskQueue,
    WorkerConfig,
    WorkerService,
)
from components.config import OperationsConfig
from components.loading import SECTIONS, config_fields, config_key, project_keys
from components.monitoring import Operations
from contract.resources import PROJECT_NAME

COMPONENT_SECTIONS: list[tuple[type[pulumi.ComponentResource], type[object]]] = [
    (Identities, IdentitiesConfig),
    (WorkerService, WorkerConfig),
    (TaskQueue, QueueConfig),
    (Operations, OperationsConfig),
    (DeadLetterBucket, DeadLetterConfig),
    (TaskPipeline, PipelineConfig),
]


@pytest.mark.parametrize(("component", "section"), COMPONENT_SECTIONS)
def test_each_component_takes_its_section_as_its_config(
    component: type[pulumi.ComponentResource], section: type[object]
) -> None:
    # The modules use `from __future__ import annotations`: annotations are their text.
    parameters = list(inspect.signature(component.__init__).parameters.values())
    assert [p.name for p in parameters[:3]] == ["self", "name", "config"]
    assert parameters[2].annotation == section.__name__
    # Besides its own section a component may take the `gcp` section; every other
    # parameter is another component's output, a resource to wait for, or opts.
    all_models: list[type[BaseModel]] = [*SECTIONS.values(), PipelineConfig]
    models = {model.__name__ for model in all_models}
    others = {str(p.annotation) for p in parameters[3:]}
    assert others & models <= {GcpConfig.__name__}, component


def test_every_section_of_the_pipeline_config_is_taken_by_a_component() -> None:
    # Besides its own section every component takes the `gcp` section (gcp_config);
    # RoutingConfig is read by TaskPipeline itself: one TaskQueue per queue key (each
    # taking its own QueueConfig), the routes to the worker's env and the outputs.
    taken: set[type[object]] = {section for _, section in COMPONENT_SECTIONS}
    taken |= {GcpConfig, RoutingConfig}
    assert set(SECTIONS.values()) <= taken
    for component, _ in COMPONENT_SECTIONS[:-1]:
        assert "gcp_config" in inspect.signature(component.__init__).parameters


def test_a_key_is_a_field_of_exactly_one_section() -> None:
    fields = [field for model in SECTIONS.values() for field in model.model_fields]
    assert len(fields) == len(set(fields)) == len(config_fields())


def test_keys_are_in_the_section_namespace() -> None:
    assert config_key("project") == "gcp:project"
    assert config_key("max_attempts") == f"{PROJECT_NAME}:max_attempts"
    gcp_fields = set(GcpConfig.model_fields)
    assert {k.split(":", 1)[1] for k in project_keys()} == set(config_fields()) - gcp_fields
