"""The worker image, checked statically (no Docker engine here), and its pins."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "service" / "Dockerfile"
IMAGE_REQUIREMENTS = ROOT / "service" / "requirements.txt"
ROOT_REQUIREMENTS = ROOT / "requirements.txt"
# httpx imports its command-line extras when they happen to be installed (as they are
# in the dev .venv) and works without them; the image deliberately leaves them out.
OPTIONAL_IMPORTS = {"rich", "pygments", "markdown-it-py", "mdurl"}
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "clang", "python3-dev", "libffi-dev")


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return result


def _stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in instructions:
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, args))
    return stages


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{path.name}: {line!r} is not pinned with =="
        pins[canonicalize_name(name)] = version.strip()
    return pins


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return _instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return _stages(instructions)[-1]


class TestDockerfile:
    def test_base_is_a_pinned_slim_python(self, instructions: list[tuple[str, str]]) -> None:
        [arg] = [a for k, a in instructions if k == "ARG" and a.startswith("PYTHON_IMAGE=")]
        image = arg.split("=", 1)[1]
        assert re.fullmatch(r"python:3\.\d+\.\d+-slim-[a-z]+", image), image
        froms = [a for k, a in instructions if k == "FROM"]
        assert froms, "no FROM"
        assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms)

    def test_final_stage_runs_as_a_non_root_user(self, final_stage: list[tuple[str, str]]) -> None:
        users = [a for k, a in final_stage if k == "USER"]
        assert users, "the final stage never switches away from root"
        user = users[-1].split(":")[0]
        assert user not in ("root", "0")
        keywords = [k for k, _ in final_stage]
        assert keywords.index("USER") < keywords.index("CMD")

    def test_output_is_unbuffered(self, final_stage: list[tuple[str, str]]) -> None:
        env = " ".join(a for k, a in final_stage if k == "ENV")
        assert re.search(r"\bPYTHONUNBUFFERED=1\b", env)

    def test_command_is_the_one_the_local_stack_runs(
        self, final_stage: list[tuple[str, str]]
    ) -> None:
        [cmd] = [a for k, a in final_stage if k == "CMD"]
        assert json.loads(cmd) == ["python", "-m", "service"]
        assert not [k for k, _ in final_stage if k == "ENTRYPOINT"]

    def test_final_stage_has_no_build_tools(self, final_stage: list[tuple[str, str]]) -> None:
        runs = " ".join(a for k, a in final_stage if k == "RUN")
        assert "pip install" not in runs
        assert "apt-get install" not in runs
        for tool in BUILD_TOOLS:
            assert not re.search(rf"(^|\s){re.escape(tool)}(\s|$)", runs), tool

    def test_dependencies_come_from_the_pinned_file_as_wheels(
        self, instructions: list[tuple[str, str]]
    ) -> None:
        runs = " ".join(a for k, a in instructions if k == "RUN")
        assert "-r /tmp/requirements.txt" in runs
        assert "--only-binary=:all:" in runs
        assert "--no-deps" in runs
        copies = [a for k, a in instructions if k == "COPY"]
        assert "service/requirements.txt /tmp/requirements.txt" in copies

    def test_final_stage_copies_our_code_not_the_whole_context(
        self, final_stage: list[tuple[str, str]]
    ) -> None:
        sources = []
        for keyword, args in final_stage:
            if keyword != "COPY":
                continue
            parts = args.split()
            if parts[0].startswith("--from="):
                assert parts[1:] == ["/opt/venv", "/opt/venv"]
                continue
            sources.extend(parts[:-1])
        assert {"contract/", "service/"} <= set(sources)
        # A team may add its own task package; never the whole build context.
        assert not {".", "./", "*", "/"} & set(sources)

    def test_build_context_is_trimmed_to_what_is_copied(self) -> None:
        ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().split()
        assert ignore[ignore.index("*") :][:3] == ["*", "!contract/", "!service/"]


class TestImageContents:
    """What the build context lets through holds no test-only code."""

    # Test tooling, and the project packages the worker must not reach into.
    TEST_ONLY_IMPORTS = frozenset({"pytest", "hypothesis", "tests", "emulator", "benchmarks"})

    def _shipped(self) -> list[Path]:
        ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().split()
        roots = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
        return sorted(p for root in roots for p in (ROOT / root).rglob("*.py"))

    def test_no_test_modules_ship(self) -> None:
        shipped = self._shipped()
        assert shipped, "the image would hold no Python code: the check is broken"
        names = [p.relative_to(ROOT) for p in shipped]
        test_like = [
            n for n in names if n.name.startswith("test") or n.name in {"conftest.py", "testing.py"}
        ]
        assert not test_like, f"test-only modules would ship in the image: {test_like}"

    def test_shipped_code_imports_no_test_tooling(self) -> None:
        offenders = []
        for path in self._shipped():
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = {node.module.split(".")[0]}
                else:
                    continue
                if names & self.TEST_ONLY_IMPORTS:
                    offenders.append(f"{path.relative_to(ROOT)}: {sorted(names)}")
        assert not offenders, offenders


class TestAppFactory:
    def test_importing_the_app_module_builds_nothing(self) -> None:
        import service.app

        assert not hasattr(service.app, "app"), "an app is built at import"

    def test_uvicorn_factory_import_string_builds_the_app(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from starlette.applications import Starlette
        from uvicorn.importer import import_from_string

        for name in [n for n in os.environ if n.startswith("TASKS_")]:
            monkeypatch.delenv(name)
        # uvicorn's own default bind; without a token check, nothing wider is served.
        monkeypatch.setenv("HOST", "127.0.0.1")
        factory = import_from_string("service.app:create_app")
        app = factory()  # what `uvicorn service.app:create_app --factory` does
        assert isinstance(app, Starlette)
        assert "smoke" in app.state.registry


class TestImageRequirements:
    def test_pins_match_the_root_requirements(self) -> None:
        image, root = _pins(IMAGE_REQUIREMENTS), _pins(ROOT_REQUIREMENTS)
        mismatched = {n: (v, root.get(n)) for n, v in image.items() if root.get(n) != v}
        assert not mismatched, (
            f"service/requirements.txt differs from requirements.txt: {mismatched}"
        )

    def test_pins_cover_the_dependency_closure(self) -> None:
        from importlib import metadata

        image = _pins(IMAGE_REQUIREMENTS)
        missing: set[str] = set()
        for name in list(image):
            for spec in metadata.requires(name) or []:
                requirement = Requirement(spec)
                if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                    continue
                if canonicalize_name(requirement.name) not in image:
                    missing.add(f"{requirement.name} (needed by {name})")
        assert not missing, f"add to service/requirements.txt: {sorted(missing)}"

    def test_pins_cover_everything_the_worker_imports(self) -> None:
        # Import and build the worker as `python -m service` would (the factory loads
        # the built-in handlers), then map every loaded top-level module to its
        # distribution.
        script = (
            "import json, sys, os, importlib.metadata as m\n"
            "before = set(sys.modules)\n"
            "import service.app, service.__main__\n"
            "service.app.create_app()\n"
            "new = set(sys.modules) - before\n"
            "tops = {n.split('.')[0] for n in new}\n"
            "candidates = {d for t, ds in m.packages_distributions().items() if t in tops"
            " for d in ds}\n"
            "owner = {}\n"
            "for name in candidates:\n"
            "    d = m.distribution(name)\n"
            "    for f in d.files or []:\n"
            "        if f.suffix in ('.py', '.so'):\n"
            "            owner[os.path.realpath(d.locate_file(f))] = d.metadata['Name']\n"
            "found = set()\n"
            "for name in new:\n"
            "    path = getattr(sys.modules[name], '__file__', None)\n"
            "    if path and os.path.realpath(path) in owner:\n"
            "        found.add(owner[os.path.realpath(path)])\n"
            "print(json.dumps(sorted(found)))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={"PATH": "/usr/bin:/bin", "HOST": "127.0.0.1", "TASKS_EXTRA_MODULES": ""},
        ).stdout
        imported = {canonicalize_name(d) for d in json.loads(out)}
        imported -= {canonicalize_name("cloud-tasks-pipeline")}  # this repository itself
        imported -= OPTIONAL_IMPORTS
        image = _pins(IMAGE_REQUIREMENTS)
        assert imported, "found no third-party imports at all: the check is broken"
        assert imported <= set(image), f"imported but not pinned: {sorted(imported - set(image))}"
        assert {"starlette", "uvicorn", "google-auth", "httpx", "pydantic"} <= imported
        # uvicorn imports the loop and parser only when it starts serving.
        assert {"uvloop", "httptools"} <= set(image)
