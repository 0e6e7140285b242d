# Every step a person or CI runs. `make help` lists them.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
EXTRAS ?= dev,trino,dbt,spark

.DEFAULT_GOAL := help
.PHONY: help install install-dev web-assets browser-deps demo up test lint unit openapi bench-queue bench-queue-peers bench-scheduler bench-ingest bench-medallion bench-ui bench-notify soak clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-14s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip==25.3

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@ $(STAMP)

install: $(STAMP) web-assets ## create .venv and install the project

install-dev: $(DEV_STAMP) web-assets ## install the project with every extra and the test tools

web-assets: ## front-end libraries from npm into src/lakehouse/web/static/vendor/ (git-ignored)
	bash scripts/web-assets.sh

browser-deps: ## Debian's chromium for the browser tests (never `playwright install`)
	bash scripts/browser-deps.sh

demo: $(STAMP) web-assets ## run the main job on the embedded default and serve the Control Room (LAKEHOUSE_PORT, default 8000)
	$(BIN)/lakehouse demo $(if $(LAKEHOUSE_PORT),--port $(LAKEHOUSE_PORT),)

up: $(STAMP) web-assets ## start API + UI + scheduler + 2 workers
	$(BIN)/lakehouse up

lint: $(DEV_STAMP) ## ruff and mypy
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: $(DEV_STAMP) ## lint, then the whole suite (unit, SQLite, PostgreSQL, end to end)
	bash scripts/ensure-services.sh
	bash scripts/browser-deps.sh
	bash scripts/web-assets.sh
	$(MAKE) lint
	$(BIN)/lakehouse pipelines validate pipelines/
	$(BIN)/python -m pytest -q -p no:cacheprovider

unit: $(DEV_STAMP) ## the fast tests on SQLite only: no PostgreSQL, no processes spawned
	LAKEHOUSE_TEST_BACKENDS=$${LAKEHOUSE_TEST_BACKENDS:-sqlite} $(BIN)/python -m pytest -q -m "not slow" -p no:cacheprovider

openapi: $(STAMP) ## rewrite contracts/lakehouse-executor.openapi.yaml from the app
	$(BIN)/lakehouse openapi > contracts/lakehouse-executor.openapi.yaml

bench-queue: $(DEV_STAMP) ## queue benchmark on PostgreSQL and SQLite (prints JSON)
	$(BIN)/python bench/queue_bench.py

bench-queue-peers: $(DEV_STAMP) ## queue benchmark on PostgreSQL + pgqueuer and procrastinate in the same run (ratios in the JSON)
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python bench/queue_bench.py --backend postgres --peers

bench-scheduler: $(DEV_STAMP) ## 1,000 one-minute schedules (tick lag, CPU per tick) + a 10,000-run backfill on PostgreSQL (prints JSON)
	$(BIN)/python bench/scheduler.py

bench-ingest: $(DEV_STAMP) ## Postgres → bronze Iceberg rows/s vs psql \copy and dlt (prints JSON)
	$(BIN)/python bench/ingest.py

bench-ui: $(DEV_STAMP) ## runs list / run detail server time at 1M runs and 10M events (prints JSON)
	$(BIN)/python bench/ui.py

bench-medallion: $(DEV_STAMP) ## the three pipelines at ~1M journal lines vs pyspark local[2] (prints JSON)
	$(BIN)/python bench/medallion.py

bench-notify: $(DEV_STAMP) ## notifications delivered/s through the outbox to a local signed-webhook receiver on PostgreSQL (prints JSON)
	$(BIN)/python bench/notify_bench.py

soak: $(DEV_STAMP) ## SOAK_PHASES (default 1,000,000) phases through serve + workers on PostgreSQL: exactly once, full trails, flat RSS (prints JSON)
	$(BIN)/python bench/soak.py $(if $(SOAK_PHASES),--phases $(SOAK_PHASES),)

clean: ## remove the venv and build output
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
