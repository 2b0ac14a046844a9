"""The offline plan: `__main__.py` evaluated for a stack under Pulumi's in-process mocks.

`evaluate(stack)` loads `Pulumi.<stack>.yaml` into the runtime config (keys
namespaced as the CLI does), runs the real program with `pulumi.runtime.Mocks`
whose outputs are realistic (service account emails from account ids, the
Cloud Run URL from the service name, project number and region, the queue path,
`serviceAccount:` members), and records every RegisterResource the program
makes: type, name, parent, dependencies, provider and resolved inputs with the
engine's camelCase names. The result is a `Plan`, which serialises to the JSON
shape fixed in the plan contract (and committed as tests/snapshots/plan-<stack>.json).

Each evaluation runs on its own thread: Pulumi keeps its settings, config and
root stack in context variables, and a new thread starts with an empty context
and its own event loop, so several stacks evaluate in one process without
leaking into each other.

This module deliberately does not call the Pulumi CLI, a provider plugin or
Google Cloud, and it does not judge the plan (tests and policy do that).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import runpy
import sys
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.settings import get_root_resource
from pulumi.runtime.stack import run_pulumi_func

from contract.names import STACK_OUTPUT_KEYS

REPO_ROOT = Path(__file__).resolve().parent.parent
PROJECT = "cloud-tasks-pipeline"
SNAPSHOT_DIR = Path("tests") / "snapshots"
SECRET_PLACEHOLDER = "[secret]"  # noqa: S105 (a mask, not a secret)

# Types the plan's consumers (local stack, policy, tests) look for.
QUEUE = "gcp:cloudtasks/queue:Queue"
QUEUE_IAM_MEMBER = "gcp:cloudtasks/queueIamMember:QueueIamMember"
RUN_SERVICE = "gcp:cloudrunv2/service:Service"
RUN_IAM_MEMBER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
ACCOUNT = "gcp:serviceaccount/account:Account"
ACCOUNT_IAM_MEMBER = "gcp:serviceaccount/iAMMember:IAMMember"
PROJECT_IAM_MEMBER = "gcp:projects/iAMMember:IAMMember"
PROJECT_SERVICE = "gcp:projects/service:Service"
SERVICE_IDENTITY = "gcp:projects/serviceIdentity:ServiceIdentity"
REPOSITORY = "gcp:artifactregistry/repository:Repository"
IMAGE = "docker-build:index:Image"


class PlanError(RuntimeError):
    """The plan cannot be made (missing stack file, unreadable YAML, invalid config...).

    `declared` counts the resources the program had registered when it failed:
    0 for a config error, which the program raises before declaring anything.
    """

    def __init__(self, message: str, declared: int = 0) -> None:
        super().__init__(message)
        self.declared = declared


@dataclass(frozen=True)
class PlannedResource:
    urn: str
    type: str
    name: str
    parent: str | None
    dependencies: tuple[str, ...]
    provider: str | None
    inputs: dict[str, Any]
    outputs: dict[str, Any]

    @property
    def is_component(self) -> bool:
        """Components have our own `tasks:` type tokens; everything else is a cloud resource."""
        return self.type.startswith("tasks:")

    def to_json(self) -> dict[str, Any]:
        return {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "parent": self.parent,
            "dependencies": list(self.dependencies),
            "provider": self.provider,
            "inputs": self.inputs,
            "outputs": self.outputs,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlannedResource:
        return cls(
            urn=data["urn"],
            type=data["type"],
            name=data["name"],
            parent=data.get("parent"),
            dependencies=tuple(data.get("dependencies", ())),
            provider=data.get("provider"),
            inputs=dict(data.get("inputs", {})),
            outputs=dict(data.get("outputs", {})),
        )


@dataclass(frozen=True)
class Plan:
    stack: str
    project: str
    resources: tuple[PlannedResource, ...]
    outputs: dict[str, Any] = field(default_factory=dict)

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

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "project": self.project,
            "resources": [r.to_json() for r in self.resources],
            "outputs": self.outputs,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        return cls(
            stack=data["stack"],
            project=data["project"],
            resources=tuple(PlannedResource.from_json(r) for r in data["resources"]),
            outputs=dict(data.get("outputs", {})),
        )


# --- stack config ------------------------------------------------------------------


def stack_file(stack: str, root: Path = REPO_ROOT) -> Path:
    return root / f"Pulumi.{stack}.yaml"


def available_stacks(root: Path = REPO_ROOT) -> list[str]:
    """Stacks with a committed `Pulumi.<stack>.yaml`."""
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def _config_text(value: object) -> str:
    # The CLI hands every value to the program as a string; structured values as JSON.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def load_stack_config(stack: str, root: Path = REPO_ROOT) -> dict[str, str]:
    """`Pulumi.<stack>.yaml`'s config as the CLI would pass it: namespaced keys, string values."""
    path = stack_file(stack, root)
    if not path.is_file():
        known = ", ".join(available_stacks(root)) or "none"
        raise PlanError(
            f"no stack file {path.name} in {root}; known stacks: {known}. "
            f"Create it (see docs/deploying.md) or pick one with --stack."
        )
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PlanError(f"{path.name} is not valid YAML: {exc}") from exc
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise PlanError(f"{path.name}: `config` must be a mapping of key: value")
    result: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict) and "secure" in value:
            raise PlanError(
                f"{path.name}: {key} is an encrypted secret; the offline plan cannot decrypt "
                "it. Keep secrets out of the pipeline's config or pass them through ESC."
            )
        full_key = key if ":" in key else f"{PROJECT}:{key}"
        result[full_key] = _config_text(value)
    return _apply_project_defaults(result, stack, root)


def _apply_project_defaults(config: dict[str, str], stack: str, root: Path) -> dict[str, str]:
    """Merge in Pulumi.yaml's declared defaults, as the CLI does before running the program.

    The CLI also refuses a stack that lacks a project key declared without a
    default; the offline plan refuses it the same way, so it cannot pass here and
    fail at `pulumi up`.
    """
    try:
        document = yaml.safe_load((root / "Pulumi.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PlanError(f"cannot read Pulumi.yaml in {root}: {exc}") from exc
    missing = []
    for key, spec in (document.get("config") or {}).items():
        full_key = key if ":" in key else f"{PROJECT}:{key}"
        if full_key in config:
            continue
        if isinstance(spec, dict) and "default" in spec:
            config[full_key] = _config_text(spec["default"])
        elif full_key.startswith(f"{PROJECT}:"):
            missing.append(key)
    if missing:
        raise PlanError(
            f"Stack '{stack}' is missing configuration values {', '.join(sorted(missing))} "
            "(declared in Pulumi.yaml without a default, so the Pulumi CLI requires them): "
            "set them in the stack file or give them a default in Pulumi.yaml."
        )
    return config


# --- mocks -----------------------------------------------------------------------------


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def project_number(project: str) -> str:
    """A stable, realistic 12-digit project number for a project id."""
    return str(100_000_000_000 + int(_digest("number", project), 16) % 900_000_000_000)


class PlanMocks(pulumi_mocks.Mocks):
    """Outputs computed the way Google Cloud computes them, deterministically."""

    def __init__(self, stack: str, project: str, region: str) -> None:
        self.stack = stack
        self.project = project
        self.region = region

    def call(self, args: pulumi_mocks.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        data_source = args.token
        if data_source == "gcp:organizations/getProject:getProject":
            project = args.args.get("projectId") or self.project
            return {
                "id": f"projects/{project}",
                "projectId": project,
                "number": project_number(project),
                "name": project,
            }
        if data_source == "gcp:organizations/getClientConfig:getClientConfig":
            return {
                "id": "client-config",
                "project": self.project,
                "region": self.region,
                "accessToken": "offline-plan-access-token",
            }
        raise PlanError(
            f"the offline plan has no mock for the data source {data_source}; "
            "add one to devstack.plan.PlanMocks.call"
        )

    def new_resource(
        self, args: pulumi_mocks.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        if not args.custom:
            return "", {}
        project = str(inputs.get("project") or self.project)
        location = str(inputs.get("location") or self.region)
        computed = self._computed(args.typ, args.name, inputs, project, location)
        resource_id = str(computed.pop("id", f"{args.name}-id"))
        return resource_id, {**inputs, **computed}

    def _computed(
        self, typ: str, name: str, inputs: dict[str, Any], project: str, location: str
    ) -> dict[str, Any]:
        if typ == ACCOUNT:
            email = f"{inputs['accountId']}@{project}.iam.gserviceaccount.com"
            full = f"projects/{project}/serviceAccounts/{email}"
            return {
                "id": full,
                "name": full,
                "email": email,
                "member": f"serviceAccount:{email}",
                "uniqueId": str(int(_digest("sa", email), 16) % 10**21),
            }
        if typ == QUEUE:
            # Pulumi auto-names with the logical name and a random 7-hex suffix.
            queue = inputs.get("name") or f"{name}-{_digest('queue', self.stack, name)[:7]}"
            path = f"projects/{project}/locations/{location}/queues/{queue}"
            return {"id": path, "name": queue}
        if typ == RUN_SERVICE:
            service = inputs["name"]
            uri = f"https://{service}-{project_number(project)}.{location}.run.app"
            return {
                "id": f"projects/{project}/locations/{location}/services/{service}",
                "uri": uri,
                "urls": [uri],
            }
        if typ == SERVICE_IDENTITY:
            email = (
                f"service-{project_number(project)}@gcp-sa-"
                f"{str(inputs['service']).split('.')[0]}.iam.gserviceaccount.com"
            )
            return {
                "id": f"projects/{project}/services/{inputs['service']}",
                "email": email,
                "member": f"serviceAccount:{email}",
            }
        if typ == PROJECT_SERVICE:
            return {"id": f"{project}/{inputs['service']}"}
        if typ == REPOSITORY:
            repo = inputs["repositoryId"]
            return {
                "id": f"projects/{project}/locations/{location}/repositories/{repo}",
                "name": repo,
                "registryUri": f"{location}-docker.pkg.dev/{project}/{repo}",
            }
        if typ == IMAGE:
            tag = inputs["tags"][0]
            digest = f"sha256:{_digest('image', tag)}"
            return {"id": digest, "digest": digest, "ref": f"{tag.rsplit(':', 1)[0]}@{digest}"}
        if typ in (QUEUE_IAM_MEMBER, RUN_IAM_MEMBER, ACCOUNT_IAM_MEMBER, PROJECT_IAM_MEMBER):
            scope = inputs.get("name") or inputs.get("serviceAccountId") or project
            return {
                "id": f"{scope}/{inputs['role']}/{inputs['member']}",
                "etag": f"BwY{_digest('etag', name)[:8]}",
            }
        return {"id": f"{name}-id"}


# --- recording -------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Deserialised RPC values as JSON: secrets masked, unknowns named."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return SECRET_PLACEHOLDER
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        # Protobuf Structs carry every number as a double; 5.0 dispatches is 5.
        return int(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


@dataclass
class _Registration:
    urn: str
    type: str
    name: str
    parent: str
    dependencies: list[str]
    provider: str
    inputs: dict[str, Any]
    custom: bool


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, also keeping what `Mocks.new_resource` cannot see: parent,
    dependencies and provider of every RegisterResource."""

    def __init__(self, mocks: pulumi_mocks.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[_Registration] = []
        self.stack_urn: str | None = None
        self._lock = threading.Lock()  # the SDK calls the monitor from executor threads

    def RegisterResource(self, request: Any) -> Any:  # gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type == "pulumi:pulumi:Stack":
            self.stack_urn = response.urn
            return response
        inputs = rpc.deserialize_properties(request.object, keep_unknowns=True)
        with self._lock:
            self.registrations.append(
                _Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    dependencies=list(request.dependencies),
                    provider=request.provider,
                    inputs=inputs,
                    custom=bool(request.custom),
                )
            )
        return response


def _ordered(resources: list[PlannedResource]) -> list[PlannedResource]:
    """A deterministic registration order: parents and dependencies first, ties by URN.

    The SDK registers from executor threads, so the order calls arrive in can
    vary between runs; this order is one the engine could have seen, and stable.
    """
    by_urn = {r.urn: r for r in resources}
    placed: set[str] = set()
    result: list[PlannedResource] = []
    pending = sorted(by_urn)
    while pending:
        progressed = False
        for urn in list(pending):
            r = by_urn[urn]
            before = [d for d in (r.parent, *r.dependencies) if d is not None and d in by_urn]
            if all(d in placed for d in before):
                result.append(r)
                placed.add(urn)
                pending.remove(urn)
                progressed = True
                break
        if not progressed:  # a cycle cannot come from Pulumi; keep the rest by URN
            result.extend(by_urn[u] for u in pending)
            break
    return result


# --- evaluation ------------------------------------------------------------------------


def _evaluate_here(stack: str, root: Path, config: dict[str, str]) -> Plan:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # The SDK calls the monitor from the loop's executor threads, and the mock monitor
    # needs an event loop in each; giving each thread one here lets us close them all
    # afterwards instead of leaking them until interpreter exit.
    thread_loops: list[asyncio.AbstractEventLoop] = []
    thread_loops_lock = threading.Lock()

    def give_thread_a_loop() -> None:
        thread_loop = asyncio.new_event_loop()
        asyncio.set_event_loop(thread_loop)
        with thread_loops_lock:
            thread_loops.append(thread_loop)

    loop.set_default_executor(
        ThreadPoolExecutor(thread_name_prefix=f"plan-{stack}-rpc", initializer=give_thread_a_loop)
    )
    try:
        mocks = PlanMocks(
            stack, config.get("gcp:project", "unset-project"), config.get("gcp:region", "unset")
        )
        monitor = RecordingMonitor(mocks)
        pulumi.runtime.set_mocks(
            mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor
        )
        pulumi.runtime.set_all_config(config)
        program = root / "__main__.py"

        def run_program() -> None:
            runpy.run_path(str(program), run_name="__main__")

        try:
            loop.run_until_complete(run_pulumi_func(run_program))
        except Exception as exc:
            from components.config import ConfigError

            if isinstance(exc, ConfigError):
                raise PlanError(str(exc), declared=len(monitor.registrations)) from exc
            raise
        root_stack = get_root_resource()
        exported: dict[str, Any] = dict(getattr(root_stack, "outputs", {}))
        resolved = loop.run_until_complete(pulumi.Output.from_input(exported).future())
        outputs = {k: _plain(v) for k, v in (resolved or {}).items()}

        states = monitor.get_registered_resources()
        resources = []
        for reg in monitor.registrations:
            state = states.get(reg.urn)
            computed: dict[str, Any] = {}
            if reg.custom and state is not None:
                computed = {"id": state.id}
                computed.update(
                    {k: v for k, v in state.state.items() if k not in reg.inputs or k == "name"}
                )
            resources.append(
                PlannedResource(
                    urn=reg.urn,
                    type=reg.type,
                    name=reg.name,
                    parent=None if reg.parent in ("", monitor.stack_urn) else reg.parent,
                    dependencies=tuple(sorted(set(reg.dependencies))),
                    provider=reg.provider or None,
                    inputs=_plain(reg.inputs),
                    outputs=_plain(computed),
                )
            )
        return Plan(
            stack=stack, project=PROJECT, resources=tuple(_ordered(resources)), outputs=outputs
        )
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        for thread_loop in thread_loops:
            thread_loop.close()
        loop.close()
        asyncio.set_event_loop(None)


def evaluate(stack: str = "dev", root: Path = REPO_ROOT) -> Plan:
    """Evaluate `__main__.py` for `stack` (its `Pulumi.<stack>.yaml`) under mocks.

    Raises `PlanError` when there is no such stack or its config is invalid
    (the message is the program's own `ConfigError`, naming key, value and fix).
    """
    return evaluate_config(stack, load_stack_config(stack, root), root)


def evaluate_config(stack: str, config: Mapping[str, str], root: Path = REPO_ROOT) -> Plan:
    """Evaluate the program with an explicit config (namespaced keys, string values),
    as the CLI would pass it; for variants that have no stack file."""
    config = dict(config)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    result: list[Plan] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(_evaluate_here(stack, root, config))
        except BaseException as exc:  # handed to the calling thread
            errors.append(exc)

    # A fresh thread = a fresh contextvars context and event loop (see module doc).
    worker = threading.Thread(target=target, name=f"plan-{stack}", daemon=True)
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    plan = result[0]
    missing = [key for key in STACK_OUTPUT_KEYS if key not in plan.outputs]
    if missing:
        raise PlanError(f"the program did not export {', '.join(missing)} for stack {stack}")
    return plan


# --- snapshots -----------------------------------------------------------------------------


def snapshot_path(stack: str, root: Path = REPO_ROOT) -> Path:
    return root / SNAPSHOT_DIR / f"plan-{stack}.json"


def load_snapshot(stack: str, root: Path = REPO_ROOT) -> Plan:
    path = snapshot_path(stack, root)
    if not path.is_file():
        raise PlanError(
            f"no committed snapshot {path.relative_to(root)}; "
            f"write it with `python -m devstack snapshot --stack {stack}` (make snapshots)"
        )
    return Plan.from_json(json.loads(path.read_text()))


def write_snapshot(plan: Plan, root: Path = REPO_ROOT) -> Path:
    path = snapshot_path(plan.stack, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(plan.dumps())
    return path
