# Treadle — one entry point for setting up, generating, checking and testing.
# `make help` lists the targets. Everything installs itself: a fresh clone needs
# only python3 (3.11+), node and go on PATH.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: help install run gen check-gen lint format vectors go bench-setup bench bench-smoke test chaos reliability-table clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

install: $(UV) ## create .venv with every workspace member and the dev tools (from uv.lock)
	$(UV) sync --locked --all-packages --python $(PYTHON) --quiet

ARGS ?=
run: install ## run the orchestrator on 127.0.0.1:7233 with ./treadle.db (extra flags: ARGS="...")
	$(VENV)/bin/treadle serve $(ARGS)

gen: install ## regenerate code from protocol/schema
	$(PY) protocol/tools/gen.py

check-gen: install ## fail if generated code is stale
	$(PY) protocol/tools/gen.py --check

lint: install ## ruff (lint + format check) and mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

vectors: install ## check protocol/vectors against their schema and the reference implementation
	$(PY) protocol/tools/check_vectors.py

go: ## the Go SDK: go vet and go test -race (in sdk-go)
	cd sdk-go && go vet ./... && go test -race -count=1 ./...

BENCH_CELERY := bench/peers/celery

bench-setup: install ## benchmark prerequisites: redis-server (Debian package) and Celery's own venv
	@command -v redis-server >/dev/null || { \
	  echo "bench-setup: installing redis-server (apt-get; needs root)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(BENCH_CELERY)/.venv $(UV) sync --locked \
	  --project $(BENCH_CELERY) --python $(PYTHON) --quiet

bench: bench-setup ## full benchmarks, 3 runs (~30 min): writes bench/RESULTS.md, bench/results.json
	$(PY) -m bench all $(ARGS)

bench-smoke: bench-setup ## every benchmark scenario and peer, tiny counts, 1 run (part of `test`)
	$(PY) -m bench smoke > /dev/null

test: install check-gen lint vectors go bench-smoke ## everything: generated code, lint, vectors, all tests
	$(VENV)/bin/pytest

CHAOS_RUNS ?= 1
CHAOS_OUT := build/chaos-results
chaos: install ## chaos scenarios, fuzzers, security checks → docs/reliability-results.json
	rm -rf $(CHAOS_OUT)
	for run in $$(seq $(CHAOS_RUNS)); do \
		TREADLE_CHAOS_RESULTS=$(CHAOS_OUT) $(VENV)/bin/pytest tests/chaos -p no:cacheprovider \
			--ignore=tests/chaos/test_reliability_doc.py; \
	done
	$(PY) tests/chaos/reliability_table.py collect $(CHAOS_OUT) docs/reliability-results.json

reliability-table: install ## regenerate docs/reliability.md's tables from its results file
	$(PY) tests/chaos/reliability_table.py render docs/reliability-results.json docs/reliability.md

clean: ## remove the environments and caches
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache .hypothesis
