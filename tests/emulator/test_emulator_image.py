"""The emulator's own image (emulator/Dockerfile), checked statically (no Docker engine
here): what it installs is exactly what the emulator imports, its command parses with
the emulator's own parser, and the docker-compose snippet of the README is usable."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from emulator.__main__ import build_parser, parse_args
from tests.service import test_service_image as worker_image

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "emulator" / "Dockerfile"
IGNORE = ROOT / "emulator" / "Dockerfile.dockerignore"
REQUIREMENTS = ROOT / "emulator" / "requirements.txt"
# Imported by google-api-core only when installed (tracing); the image leaves them out.
OPTIONAL_IMPORTS = {"opentelemetry-instrumentation", "wrapt"}

# Imports what `python -m emulator` runs (the servers built, a YAML queues file read,
# uvicorn's HTTP parser chosen) and prints the distributions the loaded modules belong to.
_IMPORTS_SCRIPT = """
import json, os, sys, importlib.metadata as m
before = set(sys.modules)
import emulator.__main__, emulator.server, yaml, uvicorn
from emulator.core import Emulator
from emulator.grpc_api import generic_handler
from emulator.rest_api import build_app
emulator_ = Emulator()
generic_handler(emulator_)
uvicorn.Config(build_app(emulator_), lifespan="off").load()
new = set(sys.modules) - before
tops = {n.split('.')[0] for n in new}
candidates = {d for t, ds in m.packages_distributions().items() if t in tops for d in ds}
owner = {}
for name in candidates:
    d = m.distribution(name)
    for f in d.files or []:
        if f.suffix in ('.py', '.so'):
            owner[os.path.realpath(d.locate_file(f))] = d.metadata['Name']
found = set()
for name in new:
    path = getattr(sys.modules[name], '__file__', None)
    if path and os.path.realpath(path) in owner:
        found.add(owner[os.path.realpath(path)])
print(json.dumps(sorted(found)))
"""


@pytest.fixture(scope="module")
def final_stage() -> list[tuple[str, str]]:
    return worker_image._stages(worker_image._instructions(DOCKERFILE.read_text()))[-1]


def _closure(names: set[str]) -> set[str]:
    """The distributions ``names`` need (their requirements, extras included)."""
    seen: set[tuple[str, str]] = set()
    stack = [(name, "") for name in names]
    while stack:
        name, extra = stack.pop()
        key = (canonicalize_name(name), extra)
        if key in seen:
            continue
        seen.add(key)
        for spec in metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker is None and extra:
                continue  # base requirements come with extra ""
            if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
                continue
            stack.append((requirement.name, ""))
            stack.extend((requirement.name, e) for e in requirement.extras)
    return {name for name, _ in seen}


def test_same_python_as_the_worker_image() -> None:
    def base(path: Path) -> str:
        [arg] = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", path.read_text(), re.MULTILINE)
        return str(arg)

    assert base(DOCKERFILE) == base(ROOT / "service" / "Dockerfile")


def test_runs_as_a_non_root_user_with_a_writable_data_volume(
    final_stage: list[tuple[str, str]],
) -> None:
    keywords = [k for k, _ in final_stage]
    [user] = [a for k, a in final_stage if k == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    runs = " ".join(a for k, a in final_stage if k == "RUN")
    assert f"chown {user} /data" in runs
    assert [a for k, a in final_stage if k == "VOLUME"] == ["/data"]
    assert "pip install" not in runs


def test_command_parses_with_the_emulators_own_flags(final_stage: list[tuple[str, str]]) -> None:
    [entrypoint] = [json.loads(a) for k, a in final_stage if k == "ENTRYPOINT"]
    [cmd] = [json.loads(a) for k, a in final_stage if k == "CMD"]
    assert entrypoint[:3] == ["python", "-m", "emulator"]
    settings = parse_args(entrypoint[3:] + cmd)
    assert settings.host == "0.0.0.0"
    assert settings.data is not None
    assert settings.data.startswith("/data/")
    [exposed] = [a.split() for k, a in final_stage if k == "EXPOSE"]
    defaults = build_parser().parse_args([])
    assert exposed == [str(defaults.port), str(defaults.http_port)]


def test_copies_only_the_emulator_and_contract(final_stage: list[tuple[str, str]]) -> None:
    sources = [
        part
        for k, a in final_stage
        if k == "COPY" and not a.startswith("--from=")
        for part in a.split()[:-1]
    ]
    assert sorted(sources) == ["contract/", "emulator/"]
    ignored = IGNORE.read_text().split()
    assert ignored[ignored.index("*") :][:3] == ["*", "!contract/", "!emulator/"]
    assert "emulator/testing.py" in ignored


def test_installs_the_pinned_wheels_only() -> None:
    text = DOCKERFILE.read_text()
    assert "COPY emulator/requirements.txt /tmp/requirements.txt" in text
    assert "--only-binary=:all: --no-deps -r /tmp/requirements.txt" in text
    pins, root = worker_image._pins(REQUIREMENTS), worker_image._pins(ROOT / "requirements.txt")
    assert {n: v for n, v in pins.items() if root.get(n) != v} == {}


def test_installs_exactly_what_the_emulator_imports() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORTS_SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout
    imported: set[str] = {canonicalize_name(d) for d in json.loads(out)}
    imported -= {canonicalize_name("cloud-tasks-pipeline"), *OPTIONAL_IMPORTS}
    assert {"grpcio", "google-cloud-tasks", "aiohttp", "uvicorn", "pyyaml"} <= imported
    pins = set(worker_image._pins(REQUIREMENTS))
    needed = _closure(imported)
    assert needed - pins == set(), "imported (or needed by an import) but not pinned"
    assert pins - needed == set(), "pinned but never imported: the image would carry it"


def test_the_readme_compose_snippet_builds_this_image_and_its_command_parses() -> None:
    readme = (ROOT / "emulator" / "README.md").read_text()
    section = readme.split("### docker-compose", 1)[1]
    snippet = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    service = yaml.safe_load(snippet)["services"]["cloud-tasks"]
    assert service["build"] == {"context": ".", "dockerfile": "emulator/Dockerfile"}
    settings = parse_args(["--host", "0.0.0.0", *service["command"]])  # the ENTRYPOINT's flag
    assert "cloud-tasks" in settings.allow_hosts
    assert all(p.startswith("127.0.0.1:") for p in service["ports"])
