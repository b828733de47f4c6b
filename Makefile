# The project's entry points. `make help` lists them. Everything runs through uv, which this
# Makefile installs into .tools/ on a machine that does not have it yet.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV_VERSION := 0.13.8
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
PYTEST_ARGS ?=
# What `make test-containers` runs besides tests/containers: database tests that `make test`
# runs on the local cluster, here on testcontainers' PostgreSQL, so that branch of the fixture
# chain is exercised too; the chaos test crashes and restarts that container.
CONTAINER_DB_TESTS ?= tests/core tests/chaos

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-16s %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	@echo "uv not found: installing uv $(UV_VERSION) into .tools/"
	@python3 -m venv .tools || { echo "python3 -m venv failed: install python3-venv (Debian/Ubuntu) or uv itself" >&2; exit 1; }
	@.tools/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

.PHONY: sync
sync: $(UV) ## Install every package and dev tool into .venv (from uv.lock)
	@$(UV) sync --frozen --all-packages

.PHONY: run
run: sync ## Run migrations, the API and a worker against a throwaway local PostgreSQL
	@$(UV) run --frozen queue-dev

.PHONY: browser
browser: ## Install Debian's Chromium for the web console's tests (tests/ui), if missing and root
	@command -v chromium >/dev/null || [ -n "$$CHROMIUM_PATH" ] || { [ "$$(id -u)" = 0 ] && \
		{ apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; }; } || \
		echo "no Chromium and not root: tests/ui will fail until 'apt-get install -y chromium' (or CHROMIUM_PATH)" >&2

.PHONY: screenshots
screenshots: sync browser ## Redraw the web console's screenshots in docs/screenshots (a real browser on a real system)
	@UI_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(UV) run --frozen pytest tests/ui -q -k "every_page or phone" $(PYTEST_ARGS)

.PHONY: test
test: sync browser ## Run the whole test suite against a real PostgreSQL
	@$(UV) run --frozen pytest $(PYTEST_ARGS)

.PHONY: test-containers
test-containers: sync ## Build both images, run the compose stack, and database tests in Docker (needs DOCKER_HOST)
	@TEST_PG_PROVIDER=docker $(UV) run --frozen pytest --containers tests/containers $(CONTAINER_DB_TESTS) $(PYTEST_ARGS)

.PHONY: lint
lint: sync ## ruff, formatting, mypy --strict, import-linter, and a current uv.lock
	@$(UV) lock --check
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .
	@$(UV) run --frozen mypy
	@$(UV) run --frozen lint-imports

.PHONY: docs
docs: sync ## Build the documentation site into site/, strictly: a broken link or reference fails
	@NO_MKDOCS_2_WARNING=1 $(UV) run --frozen mkdocs build --strict

.PHONY: docs-serve
docs-serve: sync ## Preview the documentation site on http://127.0.0.1:8000, rebuilt on save
	@NO_MKDOCS_2_WARNING=1 $(UV) run --frozen mkdocs serve --strict

.PHONY: chaos-report
chaos-report: sync ## Run the chaos scenarios and write their figures to docs/reliability.md (a few minutes)
	@rm -rf .run/reliability && mkdir -p .run/reliability
	@RELIABILITY_FIGURES_DIR=$(CURDIR)/.run/reliability $(UV) run --frozen pytest -q \
		tests/chaos tests/client/test_retry_storm.py tests/e2e/test_e2e_crash_recovery.py \
		tests/e2e/test_e2e_pool_exhaustion.py $(PYTEST_ARGS)
	@$(UV) run --frozen python benchmarks/reliability_report.py .run/reliability docs/reliability.md

.PHONY: fmt
fmt: sync ## Apply ruff's fixes and formatting
	@$(UV) run --frozen ruff check --fix .
	@$(UV) run --frozen ruff format .

.PHONY: bench
bench: sync ## Benchmark against PgQueuer and Procrastinate (about 20 minutes; installs wrk if it can)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null 2>&1; } || true
	@$(UV) run --frozen python benchmarks/bench.py $(BENCH_ARGS)

.PHONY: bench-smoke
bench-smoke: sync ## Every workload of ours, tiny, and the regression gate against PgQueuer (about 2 minutes; CI runs it)
	@$(UV) run --frozen python benchmarks/bench.py --smoke --gate $(BENCH_ARGS)

.PHONY: bench-listing
bench-listing: sync ## GET /v1/jobs's statement on 10 million jobs: p50/p99 per filter (about 10 minutes)
	@$(UV) run --frozen python benchmarks/listing_bench.py $(BENCH_ARGS)

.PHONY: soak
soak: sync ## Steady load with retention on, sizes and latency each minute (SOAK_MINUTES, default 30)
	@$(UV) run --frozen python benchmarks/soak.py $(SOAK_ARGS)

.PHONY: check
check: lint docs test ## Lint, docs and tests: what CI runs but the benchmark gate and the containers
