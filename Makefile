# Everyday verbs. Everything runs with the project's own interpreter in .venv/.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STACK  ?= dev

.DEFAULT_GOAL := help
.PHONY: help setup local test test-fast lint fmt typecheck plan snapshots bench clean

help: ## list the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The stamp is rebuilt whenever a pinned requirement changes.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . || $(PY) -m pip install --quiet --no-deps -e .
	touch $@

setup: $(VENV)/.installed ## create .venv and install the pinned dependencies

local: setup ## bring the local stack up for STACK (default dev), smoke-test it, stay up until Ctrl-C
	$(PY) -m devstack up --stack $(STACK)

test: setup ## the whole test suite (unit, snapshot, integration)
	$(PY) -m pytest

test-fast: setup ## unit tests only (no local processes)
	$(PY) -m pytest -m "not integration"

lint: setup ## ruff lint + format check, mypy
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

fmt: setup ## format and auto-fix
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

typecheck: setup ## mypy only
	$(PY) -m mypy

plan: setup ## offline resource plan of STACK
	$(PY) -m devstack plan --stack $(STACK)

snapshots: setup ## rewrite the committed plan snapshots after an intended change
	$(PY) -m devstack snapshot --all

bench: setup ## every benchmark; each prints its figures
	for b in benchmarks/*_bench.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean: ## remove the virtualenv and local state
	rm -rf $(VENV) .devstack .pytest_cache .mypy_cache .ruff_cache
