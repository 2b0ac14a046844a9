"""The typed plan: every resource the program declares, and the stack's exports.

`Plan` holds `PlannedResource`s in a deterministic registration order and the
stack outputs; it serialises to the JSON shape `python -m plan --format json`
prints and tests/snapshots/plan-<stack>.json holds, and reads it back (refusing,
with `PlanFormatError`, data that is not a plan). Consumers ask it for what they
need through typed accessors (`queues()`, `services()`, `run_invoker_grants()`,
`service_accounts()`, `exports`...), which return the views of `plan.views`.

A resource's `inputs` and `outputs` stay the engine's camelCase property maps:
they are the provider's schema, which the policy pack also receives, and the
snapshot compares them whole. Deliberately not here: evaluating the program
(`plan.engine`), files (`plan.snapshots`), rendering (`plan.render`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from contract.resources import (
    ARTIFACT_REPOSITORY_TYPE,
    IMAGE_TYPE,
    PROJECT_IAM_MEMBER_TYPE,
    PROJECT_NAME,
    PROJECT_SERVICE_TYPE,
    QUEUE_IAM_MEMBER_TYPE,
    QUEUE_TYPE,
    RUN_SERVICE_IAM_MEMBER_TYPE,
    RUN_SERVICE_TYPE,
    SERVICE_ACCOUNT_IAM_MEMBER_TYPE,
    SERVICE_ACCOUNT_TYPE,
    SERVICE_IDENTITY_TYPE,
)
from plan.errors import PLAN_JSON_COMMAND, PlanFormatError
from plan.views import (
    Exports,
    IamGrant,
    Image,
    PlannedQueue,
    PlannedService,
    Repository,
    ServiceAccount,
    ServiceAgent,
)

# Resources whose type token is ours (components) rather than a provider's.
COMPONENT_PACKAGE = "tasks"


def _sorted(value: Any) -> Any:
    """value with every mapping's keys in sorted order, recursively."""
    if isinstance(value, Mapping):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


@dataclass(frozen=True)
class PlannedResource:
    """One RegisterResource of the program: identity, place in the tree, properties."""

    urn: str
    type: str
    name: str
    parent: str | None
    dependencies: tuple[str, ...]
    provider: str | None
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    protect: bool = False  # Pulumi's `protect` option: the engine refuses to delete it
    retain_on_delete: bool = False  # `retain_on_delete`: a delete forgets it, the cloud keeps it

    @property
    def is_component(self) -> bool:
        """Components have our own `tasks:` type tokens; everything else is a cloud resource."""
        return self.type.startswith(f"{COMPONENT_PACKAGE}:")

    @property
    def state(self) -> dict[str, Any]:
        """The resource's state as the engine holds it after an update: computed
        outputs with the inputs laid over them (what stack policies receive)."""
        return {**self.outputs, **self.inputs}

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "parent": self.parent,
            "dependencies": list(self.dependencies),
            "provider": self.provider,
            # Keys sorted: the engine hands properties over in no fixed order, and a
            # snapshot must not change when the plan did not.
            "inputs": _sorted(self.inputs),
            "outputs": _sorted(self.outputs),
        }
        # Written only when set, so that other resources read as before.
        if self.protect:
            data["protect"] = True
        if self.retain_on_delete:
            data["retain_on_delete"] = True
        return data

    @classmethod
    def from_json(cls, data: object) -> PlannedResource:
        if not isinstance(data, Mapping):
            raise PlanFormatError(f"a plan resource is a JSON object, got {data!r:.80}")
        missing = [key for key in ("urn", "type", "name") if not isinstance(data.get(key), str)]
        if missing:
            raise PlanFormatError(
                f"plan resource {data.get('urn', data.get('name'))!r} has no {', '.join(missing)}"
            )
        properties = {}
        for side in ("inputs", "outputs"):
            value = data.get(side) or {}
            if not isinstance(value, Mapping):
                raise PlanFormatError(f"{data['urn']}: `{side}` must be a JSON object")
            properties[side] = dict(value)
        return cls(
            urn=data["urn"],
            type=data["type"],
            name=data["name"],
            parent=data.get("parent"),
            dependencies=tuple(data.get("dependencies") or ()),
            provider=data.get("provider"),
            inputs=properties["inputs"],
            outputs=properties["outputs"],
            protect=data.get("protect") is True,
            retain_on_delete=data.get("retain_on_delete") is True,
        )


@dataclass(frozen=True)
class Plan:
    """A stack's plan: its resources in registration order and its stack outputs."""

    stack: str
    project: str
    resources: tuple[PlannedResource, ...]
    outputs: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    """The program's warnings (`pulumi.log.warn`), like the capacity check's."""

    # --- generic queries -------------------------------------------------------------

    def of_type(self, type_: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str) -> PlannedResource:
        """The single resource of a type; raises if there are none or several."""
        found = self.of_type(type_)
        if len(found) != 1:
            raise LookupError(f"expected exactly one {type_}, the plan has {len(found)}")
        return found[0]

    def by_urn(self, urn: str) -> PlannedResource:
        for resource in self.resources:
            if resource.urn == urn:
                return resource
        raise LookupError(f"no resource {urn} in the plan of stack {self.stack}")

    def children(self, urn: str | None) -> list[PlannedResource]:
        return [r for r in self.resources if r.parent == urn]

    def ancestors(self, resource: PlannedResource) -> Iterator[PlannedResource]:
        parent = resource.parent
        while parent is not None:
            found = self.by_urn(parent)
            yield found
            parent = found.parent

    # --- typed views ---------------------------------------------------------------------

    @property
    def exports(self) -> Exports:
        return Exports.of(self.outputs)

    def queues(self) -> list[PlannedQueue]:
        return [PlannedQueue.of(r) for r in self.of_type(QUEUE_TYPE)]

    def services(self) -> list[PlannedService]:
        return [PlannedService.of(r) for r in self.of_type(RUN_SERVICE_TYPE)]

    def service_accounts(self) -> list[ServiceAccount]:
        return [ServiceAccount.of(r) for r in self.of_type(SERVICE_ACCOUNT_TYPE)]

    def service_agents(self) -> list[ServiceAgent]:
        return [ServiceAgent.of(r) for r in self.of_type(SERVICE_IDENTITY_TYPE)]

    def run_invoker_grants(self) -> list[IamGrant]:
        """Every role granted on a Cloud Run service (ServiceIamMember), whatever the role."""
        return [IamGrant.of(r) for r in self.of_type(RUN_SERVICE_IAM_MEMBER_TYPE)]

    def queue_grants(self) -> list[IamGrant]:
        return [IamGrant.of(r) for r in self.of_type(QUEUE_IAM_MEMBER_TYPE)]

    def account_grants(self) -> list[IamGrant]:
        """Roles on service accounts (actAs); the target is the account's full name."""
        return [IamGrant.of(r) for r in self.of_type(SERVICE_ACCOUNT_IAM_MEMBER_TYPE)]

    def project_grants(self) -> list[IamGrant]:
        return [IamGrant.of(r) for r in self.of_type(PROJECT_IAM_MEMBER_TYPE)]

    def enabled_apis(self) -> list[str]:
        return [str(r.inputs.get("service")) for r in self.of_type(PROJECT_SERVICE_TYPE)]

    def images(self) -> list[Image]:
        return [Image.of(r) for r in self.of_type(IMAGE_TYPE)]

    def repositories(self) -> list[Repository]:
        return [Repository.of(r) for r in self.of_type(ARTIFACT_REPOSITORY_TYPE)]

    # --- JSON ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "project": self.project,
            "resources": [r.to_json() for r in self.resources],
            "outputs": self.outputs,
        } | ({"warnings": list(self.warnings)} if self.warnings else {})

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, data: object) -> Plan:
        """A plan from its JSON data; `PlanFormatError` says what is wrong with other data."""
        if not isinstance(data, Mapping):
            raise PlanFormatError(
                f"a plan is a JSON object with 'stack' and 'resources', as printed by "
                f"`{PLAN_JSON_COMMAND}`"
            )
        entries = data.get("resources")
        if not isinstance(entries, list):
            raise PlanFormatError(
                "not a plan: expected a JSON object with a 'resources' list, as printed by "
                f"`{PLAN_JSON_COMMAND}`"
            )
        outputs = data.get("outputs") or {}
        if not isinstance(outputs, Mapping):
            raise PlanFormatError("the plan's `outputs` must be a JSON object")
        return cls(
            stack=str(data.get("stack") or ""),
            project=str(data.get("project") or PROJECT_NAME),
            resources=tuple(PlannedResource.from_json(r) for r in entries),
            outputs=dict(outputs),
            warnings=tuple(str(w) for w in data.get("warnings") or ()),
        )

    @classmethod
    def loads(cls, text: str) -> Plan:
        """A plan from JSON text (`json.JSONDecodeError` when it is not JSON at all)."""
        return cls.from_json(json.loads(text))
