#!/usr/bin/env python3
"""Run Google's and Firebase's own Cloud Tasks test suites, unchanged, against the emulator.

    .venv/bin/python scripts/run_sample_suites.py \\
        --python-docs-samples /tmp/pds --nodejs-docs-samples /tmp/nds \\
        --python-tasks /tmp/pt --python-tasks-samples /tmp/pts \\
        --nodejs-tasks /tmp/nt --firebase-admin-python /tmp/fap \\
        --firebase-admin-node /tmp/fan [--work DIR] [--only NAME]

Each option is a checkout (a git work tree, or a `git archive`) of that
repository; suites whose checkout is not given are left out. The archived
googleapis repositories are taken where their tests last were:
`--python-tasks` at 674e8ee (tests/system), `--python-tasks-samples` at
d51539f (samples/snippets, before they moved to python-docs-samples),
`--nodejs-tasks` at 1327ccb (samples). Nothing of theirs is edited: only where
their clients connect changes, through emulator/redirect.py (pytest plugin,
`-p emulator.redirect`) and emulator/redirect.cjs (`NODE_OPTIONS=--require`),
plus what their CI provides from outside: a project id, a service-account key
file (generated here, `token_uri` Google's, answered by the emulator's
`POST /token` through the redirect), a stand-in for the one `gcloud` command
they call (`auth application-default print-access-token`, from that key), and
the queues their Google test project already has (`my-queue`,
`my-appengine-queue`, `default`, `testTaskQueue`).

1. prepare (network: PyPI, npm): one virtualenv per Python suite under
   `--work`, from the suite's own requirements files; `npm ci`/`npm install`
   for Node suites that have no node_modules yet;
2. run, inside a network namespace with loopback only (`unshare -n`; root or
   user namespaces needed; `--no-isolate` skips it): no test and no delivery of
   a task to `https://example.com/...` can leave the machine. A
   `python -m emulator --one-port` with the queues above and a sink answering
   200 to `testTaskQueue`'s deliveries serve every suite (App Engine tasks find
   no local app, so their attempts fail and they stay, as in Google's projects);
3. print one row per suite: its checkout's commit (a git work tree's HEAD, `-`
   for an archive), tests run, passed, failed, skipped, then each
   failure with the first line of its message. Exit 0 always when the suites
   ran (their failures are the result), 2 on bad arguments or a broken setup.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from emulator.redirect import REDIRECT_ENV  # noqa: E402
from emulator.testing import EmulatorProcess  # noqa: E402

PROJECT = "emulated-project"
LOCATION = "us-central1"
SERVICE_ACCOUNT = f"suite-runner@{PROJECT}.iam.gserviceaccount.com"
# Queues the suites expect to exist already in Google's test projects.
PRESET_QUEUES = ("my-queue", "my-appengine-queue", "default")
FIREBASE_QUEUE = "testTaskQueue"  # firebase-admin's integration tests enqueue here
# ... in this project when CLOUD_TASKS_EMULATOR_HOST is set (their emulator mode).
FIREBASE_EMULATOR_PROJECT = "fake-project-id"
ISOLATED_ENV = "RUN_SAMPLE_SUITES_ISOLATED"
# Google's CI machines have the gcloud CLI; http_queues' test asks it for an access token.
# This stand-in answers that one question from the same key file (refreshed, through the
# redirect, at the emulator's POST /token) and refuses every other command.
GCLOUD_STANDIN = """#!{python}
import json, sys
if sys.argv[1:3] not in (["auth", "application-default"], ["auth", "print-access-token"]):
    sys.exit("gcloud stand-in (scripts/run_sample_suites.py): only "
             "'gcloud auth [application-default] print-access-token' is answered")
sys.path.insert(0, {repo!r})
import emulator.redirect, google.auth, google.auth.transport.requests
emulator.redirect.install()
credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
credentials.refresh(google.auth.transport.requests.Request())
if "--format=json" in sys.argv:
    print(json.dumps({{"token": credentials.token, "expiry": credentials.expiry.isoformat()}}))
else:
    print(credentials.token)
"""
PYTHON_TIMEOUT_S = 900


@dataclass
class Result:
    suite: str
    ran: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    note: str = ""
    commit: str = "-"  # the checkout's HEAD, when it is a git work tree


@dataclass(frozen=True)
class Suite:
    name: str
    checkout: str  # the option naming the repository
    subdir: str
    kind: str  # "python" | "node"
    requirements: tuple[str, ...] = ()  # pip arguments, relative paths under subdir
    command: tuple[str, ...] = ()  # after `python -m pytest` / `npx mocha`
    extra_env: tuple[tuple[str, str], ...] = ()
    setup: Callable[[Path, Path], None] | None = None  # (suite dir, credentials file)


def _firebase_node_setup(root: Path, key_file: Path) -> None:
    # Its README: "save a service account key to test/resources/key.json" and an API key.
    resources = root / "test" / "resources"
    shutil.copyfile(key_file, resources / "key.json")
    (resources / "apikey.txt").write_text("emulated-api-key\n")


SUITES: tuple[Suite, ...] = (
    Suite(
        "python-docs-samples cloud_tasks/snippets",
        "python_docs_samples",
        "cloud_tasks/snippets",
        "python",
        ("-r", "requirements.txt", "-r", "requirements-test.txt"),
    ),
    Suite(
        "python-docs-samples cloud_tasks/http_queues",
        "python_docs_samples",
        "cloud_tasks/http_queues",
        "python",
        ("-r", "requirements.txt", "-r", "requirements-test.txt"),
    ),
    Suite(
        "python-docs-samples appengine/flexible/tasks",
        "python_docs_samples",
        "appengine/flexible/tasks",
        "python",
        ("-r", "requirements.txt", "-r", "requirements-test.txt"),
    ),
    Suite(
        "python-tasks tests/system",
        "python_tasks",
        ".",
        "python",
        ("-e", ".", "pytest"),
        ("tests/system",),
        (("PROJECT_ID", PROJECT),),
    ),
    Suite(
        "python-tasks samples/snippets (google-cloud-tasks 2.10, before the move)",
        "python_tasks_samples",
        "samples/snippets",
        "python",
        ("-r", "requirements.txt", "-r", "requirements-test.txt"),
    ),
    Suite(
        "firebase-admin-python integration/test_functions.py (production mode)",
        "firebase_admin_python",
        ".",
        "python",
        ("-r", "requirements.txt", "-e", "."),
        ("integration/test_functions.py", "--cert", "{key_file}"),
    ),
    Suite(
        "firebase-admin-python integration/test_functions.py (emulator mode)",
        "firebase_admin_python",
        ".",
        "python",
        ("-r", "requirements.txt", "-e", "."),
        ("integration/test_functions.py", "--cert", "{key_file}"),
        # The Firebase emulator's request shape (emulator/firebase_api.py); they skip
        # test_task_delete in this mode.
        (("CLOUD_TASKS_EMULATOR_HOST", "{address}"),),
    ),
    Suite(
        "nodejs-docs-samples cloud-tasks/snippets",
        "nodejs_docs_samples",
        "cloud-tasks/snippets",
        "node",
        command=("--timeout", "30000"),
    ),
    Suite(
        "nodejs-docs-samples cloud-tasks/tutorial-gcf/app",
        "nodejs_docs_samples",
        "cloud-tasks/tutorial-gcf/app",
        "node",
        command=("--timeout", "10000"),
    ),
    Suite(
        "nodejs-tasks samples (@google-cloud/tasks 3, before the move to nodejs-docs-samples)",
        "nodejs_tasks",
        "samples",
        "node",
        command=("--timeout", "30000"),
    ),
    Suite(
        "firebase-admin-node test/integration/functions.spec.ts (production mode)",
        "firebase_admin_node",
        ".",
        "node",
        command=(
            "test/integration/setup.ts",
            "test/integration/functions.spec.ts",
            "--timeout",
            "20000",
            "--require",
            "ts-node/register",
        ),
        setup=_firebase_node_setup,
    ),
)


def _write_key_file(path: Path) -> None:
    """A service-account key file shaped like Google's, with a key made here."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "emulated-key",
        "private_key": pem,
        "client_email": SERVICE_ACCOUNT,
        "client_id": "100000000000000000000",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path.write_text(json.dumps(info, indent=2))
    path.chmod(0o600)


class _Sink(BaseHTTPRequestHandler):
    """Answers every delivery 200, as a worker that accepts everything would."""

    def _ok(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _ok

    def log_message(self, *args: Any) -> None:
        pass


def _queues_file(path: Path, sink_port: int) -> None:
    parent = f"projects/{PROJECT}/locations/{LOCATION}/queues"
    queues: list[dict[str, Any]] = [{"name": f"{parent}/{q}"} for q in PRESET_QUEUES]
    queues.append(
        {
            "name": f"{parent}/{FIREBASE_QUEUE}",
            # Deploying the function points its queue at it; here, at the sink.
            "httpTarget": {
                "uriOverride": {"scheme": "HTTP", "host": "127.0.0.1", "port": str(sink_port)}
            },
        }
    )
    emulated = f"projects/{FIREBASE_EMULATOR_PROJECT}/locations/{LOCATION}/queues"
    queues.append({"name": f"{emulated}/{FIREBASE_QUEUE}"})
    path.write_text(json.dumps(queues))


def _venv(work: Path, suite: Suite, root: Path) -> Path:
    # One directory per suite, never nested in another's (--clear would wipe it).
    venv = (
        work
        / "venvs"
        / suite.name.split()[0]
        / (suite.subdir.replace("/", "_").strip(".") or "root")
    )
    python = venv / "bin" / "python"
    installed = venv / ".installed"  # written last: a failed install is redone next run
    if not installed.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *suite.requirements],
            cwd=root / suite.subdir,
            check=True,
        )
        installed.touch()
    return python


def _prepare(suite: Suite, root: Path, work: Path) -> None:
    if suite.kind == "python":
        _venv(work, suite, root)
    elif not (root / suite.subdir / "node_modules").is_dir():
        lock = (root / suite.subdir / "package-lock.json").exists()
        npm = ["npm", "ci" if lock else "install", "--no-audit", "--no-fund"]
        subprocess.run(npm, cwd=root / suite.subdir, check=True)
        if suite.checkout == "firebase_admin_node":  # its tests import the built lib/
            subprocess.run(["npm", "run", "build"], cwd=root, check=True)


def _junit(path: Path, name: str) -> Result:
    result = Result(name)
    if not path.exists():
        result.note = "no report: the run did not start (see its output above)"
        return result
    for case in ET.parse(path).iter("testcase"):  # noqa: S314 (our pytest run's report)
        result.ran += 1
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if case.find("skipped") is not None:
            result.skipped += 1
        elif problem is not None:
            result.failed += 1
            first = (problem.get("message") or problem.text or "").strip().splitlines()
            result.failures.append((case.get("name", "?"), first[0][:200] if first else ""))
        else:
            result.passed += 1
    return result


def _run(suite: Suite, root: Path, work: Path, env: dict[str, str], key_file: Path) -> Result:
    here = root / suite.subdir
    report = work / "reports" / (suite.name.split()[0] + "-" + suite.subdir.replace("/", "_"))
    report.parent.mkdir(parents=True, exist_ok=True)
    report.unlink(missing_ok=True)
    if suite.setup is not None:
        suite.setup(here, key_file)
    args = [a.format(key_file=key_file) for a in suite.command]
    env = {**env, **{k: v.format(address=env[REDIRECT_ENV]) for k, v in suite.extra_env}}
    if suite.kind == "python":
        python = _venv(work, suite, root)
        env["PYTHONPATH"] = str(REPO)  # emulator.redirect only; their code comes first on cwd
        command = [str(python), "-m", "pytest", "-p", "emulator.redirect", "-q", "-rA"]
        command += [f"--junitxml={report}", "-o", "junit_family=xunit1", *args]
    else:
        env["NODE_OPTIONS"] = f"--require {REPO / 'emulator' / 'redirect.cjs'}"
        # xunit: the one machine-readable reporter that writes to a file in every mocha.
        command = ["npx", "mocha", *args, "--reporter", "xunit"]
        command += ["--reporter-options", f"output={report}"]
    print(f"\n=== {suite.name}\n$ {' '.join(command)}", flush=True)
    try:
        subprocess.run(command, cwd=here, env=env, timeout=PYTHON_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return Result(suite.name, note=f"timed out after {PYTHON_TIMEOUT_S}s")
    return _junit(report, suite.name)


def _commit(root: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else "-"


def _table(results: Sequence[Result]) -> str:
    lines = [f"{'suite':74} {'commit':12} {'ran':>4} {'pass':>5} {'fail':>5} {'skip':>5}"]
    for r in results:
        counts = f"{r.ran:>4} {r.passed:>5} {r.failed:>5} {r.skipped:>5}"
        lines.append(f"{r.suite[:74]:74} {r.commit:12} {counts}")
        if r.note:
            lines.append(f"    note: {r.note}")
        elif r.ran == 0:  # a path their runner did not find reads as 0 of 0, not a pass
            lines.append(
                "    note: no test ran: is the checkout at the commit the docstring names?"
            )
        for test, message in r.failures:
            lines.append(f"    FAILED {test}: {message}")
    total = [sum(getattr(r, k) for r in results) for k in ("passed", "failed", "skipped")]
    lines.append(f"{total[0]} passed, {total[1]} failed, {total[2]} skipped")
    return "\n".join(lines)


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for option in sorted({s.checkout for s in SUITES}):
        parser.add_argument("--" + option.replace("_", "-"), type=Path, metavar="DIR")
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "cloud-tasks-suites"
    )
    parser.add_argument("--only", help="run only the suites whose name contains this text")
    parser.add_argument("--no-isolate", action="store_true", help="do not use unshare -n")
    return parser.parse_args(argv)


def _bad_setup(message: str) -> NoReturn:
    """Bad arguments or a broken setup: one line, exit 2 (the docstring's promise)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _selected(args: argparse.Namespace) -> list[tuple[Suite, Path]]:
    chosen = []
    for suite in SUITES:
        root = getattr(args, suite.checkout)
        if root is None or (args.only and args.only not in suite.name):
            continue
        if not (root / suite.subdir).is_dir():
            _bad_setup(f"{root / suite.subdir} does not exist: pass the repository's root")
        chosen.append((suite, root.resolve()))
    if not chosen:
        _bad_setup("no suite selected: pass at least one checkout, e.g. --python-docs-samples DIR")
    return chosen


def main(argv: Sequence[str]) -> int:
    args = _parse(argv)
    chosen = _selected(args)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if os.environ.get(ISOLATED_ENV) is None:
        for suite, root in chosen:
            try:
                _prepare(suite, root, work)
            except (subprocess.CalledProcessError, OSError) as exc:
                command = " ".join(map(str, getattr(exc, "cmd", None) or [])) or str(exc)
                _bad_setup(
                    f"preparing {suite.name} failed ({command}): is {root} the checkout at "
                    "the commit the docstring names? Its own output is above"
                )
        if not args.no_isolate:
            inner = [sys.executable, *sys.argv]
            script = 'ip link set lo up && exec "$@"'
            env = {**os.environ, ISOLATED_ENV: "1"}
            return subprocess.run(
                ["unshare", "-n", "sh", "-c", script, "sh", *inner], env=env, check=False
            ).returncode
    key_file = work / "service-account.json"
    _write_key_file(key_file)
    tools = work / "bin"
    tools.mkdir(exist_ok=True)
    (tools / "gcloud").write_text(GCLOUD_STANDIN.format(python=sys.executable, repo=str(REPO)))
    (tools / "gcloud").chmod(0o755)
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    queues = work / "queues.json"
    _queues_file(queues, sink.server_address[1])
    # No --app-engine-host: Google's test projects serve none of the App Engine
    # services the samples name, so those attempts fail and the tasks stay, as there.
    # --functions-url: where firebase-admin's emulator-mode tasks without a URL go.
    sink_url = f"http://127.0.0.1:{sink.server_address[1]}"
    emulator_args = ("--one-port", "--queues-file", str(queues), "--functions-url", sink_url)
    results = []
    with EmulatorProcess(extra_args=emulator_args) as emu:
        address = emu.grpc_host
        env = {
            **os.environ,
            REDIRECT_ENV: address,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
            "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        env.pop("CLOUD_TASKS_EMULATOR_HOST", None)  # production mode for firebase-admin
        for suite, root in chosen:
            results.append(_run(suite, root, work, env, key_file))
            results[-1].commit = _commit(root)
    sink.shutdown()
    print("\n" + _table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
