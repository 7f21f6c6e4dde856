# Everything a fresh machine needs: `make run` serves on the embedded defaults,
# `make test` runs the whole suite. Both create .venv and install on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint format schema schema-check bench system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/graphql-files serve

system-deps:
	scripts/system-deps

test: install system-deps
	$(BIN)/python -m pytest

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
