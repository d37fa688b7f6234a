# gpualloc developer targets. Every target depends on `setup` (the .venv).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= hack/profiles/default.yaml
export GPUALLOC_CACHE ?= $(HOME)/.cache/gpualloc

.PHONY: setup lint typecheck test test-unit test-cluster bench clean

setup: $(STAMP)

# Reinstall only when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

lint: setup
	$(BIN)/ruff check operator tests
	$(BIN)/ruff format --check operator tests

typecheck: setup
	$(BIN)/mypy

test-unit: setup
	$(BIN)/pytest -m unit

test: lint typecheck
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
