# Everyday verbs. Everything runs with the project's own interpreter in .venv/.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STACK  ?= dev

.DEFAULT_GOAL := help
.PHONY: help setup browser local status down logs test test-fast lint fmt typecheck plan snapshots contracts bench clean policy-venv policy-test

help: ## list the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# The stamp is rebuilt whenever a pinned requirement changes.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# Python only: the Node.js client test installs its own packages (npm ci) when it runs.
setup: $(VENV)/.installed ## create .venv with the pinned dependencies

# The inspector's browser tests drive Debian's chromium (never a downloaded browser).
browser: ## install Debian's chromium for the inspector's browser tests (root or sudo)
	@command -v chromium >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get install -y -q chromium >/dev/null || { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium >/dev/null; }; }

# `make local` needs only Python: the npm packages are for the Node client test.
local: $(VENV)/.installed ## bring the local stack up for STACK (default dev), smoke-test it, stay up until Ctrl-C
	$(PY) -m devstack up --stack $(STACK) --smoke --reload

# Most integration tests wait on local processes: two pytest workers per core keep
# the cores busy (pyproject's `-n auto` alone is one per core).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 2) * 2 )))

test: setup browser ## the whole test suite (unit, snapshot, integration); prints its time
	$(PY) -m pytest -n $(TEST_WORKERS)

test-fast: setup ## unit tests only (no local processes)
	$(PY) -m pytest -m "not integration"

lint: $(VENV)/.installed ## ruff lint + format check, mypy
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

fmt: $(VENV)/.installed ## format and auto-fix
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

typecheck: $(VENV)/.installed ## mypy only
	$(PY) -m mypy

plan: $(VENV)/.installed ## offline resource plan of STACK
	$(PY) -m plan --stack $(STACK)

snapshots: $(VENV)/.installed contracts ## rewrite the committed plan snapshots and task contracts after an intended change
	$(PY) -m plan snapshot --all

contracts: $(VENV)/.installed ## rewrite task_contracts/schemas/ (one JSON Schema per task type) after a payload model changed
	$(PY) -m task_contracts export

bench: $(VENV)/.installed policy-venv ## every benchmark; each prints its figures
	for b in benchmarks/*_bench.py; do echo "== $$b"; $(PY) $$b || exit 1; done

status: $(VENV)/.installed ## health of STACK's local parts, its queue and what each resource became
	$(PY) -m devstack status --stack $(STACK)

down: $(VENV)/.installed ## stop STACK's local stack (data, logs and ports stay)
	$(PY) -m devstack down --stack $(STACK)

logs: $(VENV)/.installed ## follow STACK's worker and emulator logs, readable (TASK=id for one task)
	$(PY) -m devstack logs --stack $(STACK) --follow $(if $(TASK),--task $(TASK))

# Stacks still running are stopped first: once .devstack/ is gone, nothing could find them.
clean: ## stop every local stack, remove the virtualenv and local state
	if [ -x $(PY) ] && [ -d .devstack ]; then \
	  for dir in .devstack/*/; do [ -d "$$dir" ] && $(PY) -m devstack down --stack "$$(basename "$$dir")"; done; \
	fi; true
	rm -rf $(VENV) policy/.venv .devstack .pytest_cache .mypy_cache .ruff_cache

# The policy pack has its own interpreter: pulumi-policy pins protobuf 5, the
# program's google-cloud-tasks needs protobuf 6 (docs/ci.md).
policy/.venv/.installed: policy/requirements.txt
	test -x policy/.venv/bin/python || $(PYTHON) -m venv policy/.venv
	policy/.venv/bin/python -m pip install --quiet -r policy/requirements.txt
	touch $@

policy-venv: policy/.venv/.installed ## create policy/.venv for `pulumi preview --policy-pack policy`

policy-test: setup policy-venv ## policy rules on every stack's plan + the pack served by pulumi_policy
	$(PY) -m pytest tests/policy
