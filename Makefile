# Berth's developer and operator entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LINT_PATHS := services tests clients/python/src/berth/client clients/python/src/berth/cli $(wildcard bench)

.DEFAULT_GOAL := help

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml clients/python/pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Berth needs Python 3.11 or newer"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e clients/python -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install Berth with its development tools

run: $(STAMP) ## Run Berth on this machine (embedded defaults; Ctrl-C stops it; options: ARGS=--no-fleet)
	$(VENV)/bin/berth up $(ARGS)

test: $(STAMP) ## Run the test suite (unit, integration on SQLite/PostgreSQL/MariaDB)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff, buf lint/format, import boundaries
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/buf lint
	$(VENV)/bin/buf format -d --exit-code
	$(VENV)/bin/lint-imports

typecheck: $(STAMP) ## mypy over the services, client and CLI
	$(VENV)/bin/mypy

protos: $(STAMP) ## Regenerate the Python stubs from protos/
	PYTHON=$(PY) tools/gen-protos.sh

proto-check: $(STAMP) ## Fail when the committed stubs differ from what protos/ generates
	@tmp=$$(mktemp -d) && PYTHON=$(PY) tools/gen-protos.sh $$tmp >/dev/null && \
	  if diff -r -q $$tmp/berth/v1 clients/python/src/berth/v1 -x __pycache__; then echo "stubs are fresh"; rm -rf $$tmp; \
	  else echo "stubs are stale: run make protos"; rm -rf $$tmp; exit 1; fi

chaos: $(STAMP) ## Only the fault-injection tests (kill -9, frozen databases, lost Redis, fuzz); make test runs them too
	$(PY) -m pytest -m chaos $(PYTEST_ARGS)

migrations-check: $(STAMP) ## Models equal migrations (alembic check on a scratch SQLite)
	$(PY) -m pytest -q tests/integration/test_migrations.py -k sqlite

check: lint typecheck proto-check test ## Everything CI runs

bench: $(STAMP) ## Benchmarks (not tests): heartbeats/s, snapshots/s, placements/s, Compute API listings
	$(PY) bench/heartbeats.py $(BENCH_ARGS)
	$(PY) bench/snapshots.py $(SNAPSHOT_BENCH_ARGS)
	$(PY) bench/scheduler.py $(SCHEDULER_BENCH_ARGS)
	$(PY) bench/api.py $(API_BENCH_ARGS)

bench-fleet: $(STAMP) ## Fleet simulator: does this machine keep N nodes in steady state? (FLEET_ARGS="--nodes 2000 5000")
	$(PY) bench/fleet.py $(FLEET_ARGS)

clean: ## Remove the virtualenv, caches and the local data directory
	rm -rf $(VENV) data .pytest_cache .ruff_cache .mypy_cache

.PHONY: help install run test chaos lint typecheck protos proto-check migrations-check check bench bench-fleet clean
