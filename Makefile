# gpualloc developer targets. Every target depends on `setup` (the .venv).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= hack/profiles/default.yaml
export GPUALLOC_CACHE ?= $(HOME)/.cache/gpualloc

.PHONY: setup deps lint typecheck test test-unit test-cluster cluster-up cluster-down cluster-status bench clean \
	demo demo-down generate bench-planner bench-operator

setup: $(STAMP)

# Reinstall only when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Binaries of the local cluster (built once into $(GPUALLOC_CACHE), see hack/README.md) and
# Prometheus (Debian package).
deps:
	hack/build-binaries.sh
	hack/install-prometheus.sh

lint: setup
	$(BIN)/ruff check operator tests hack/localcluster.py
	$(BIN)/ruff format --check operator tests hack/localcluster.py

typecheck: setup
	$(BIN)/mypy

test-unit: setup
	$(BIN)/pytest -m unit

test-cluster: setup deps
	$(BIN)/pytest -m cluster

# deps first: on a fresh machine this builds the cluster binaries the cluster tests need.
test: lint typecheck deps
	$(BIN)/pytest

# Local control plane with kwok GPU nodes; `make cluster-up PROFILE=hack/profiles/bench-200.yaml`.
cluster-up: setup deps
	$(BIN)/python hack/localcluster.py up --profile $(PROFILE)
	@echo 'Use it:  export KUBECONFIG=$$PWD/.cluster/kubeconfig; .cluster/bin/kubectl get nodes -L nvidia.com/gpu.product'

cluster-down: setup
	-@$(BIN)/python hack/demo.py stop
	$(BIN)/python hack/localcluster.py down

# The main job: the operator on the local simulated GPU cluster with the sample jobs.
demo: setup deps
	$(BIN)/python hack/demo.py up

demo-down: cluster-down

# Regenerate the CRDs (crds/ and the Helm chart's copies) from hack/gen_crds.py.
generate: setup
	$(BIN)/python hack/gen_crds.py

cluster-status: setup
	$(BIN)/python hack/localcluster.py status

# Benchmarks, JSON in bench-results/: the planner on synthetic 1k/10k-node clusters against
# greedy baselines, then the operator end to end on 200 kwok nodes against kube-scheduler alone.
bench: bench-planner bench-operator

bench-planner: setup
	$(BIN)/gpualloc bench planner --out bench-results/planner.json

bench-operator: setup deps
	$(BIN)/python hack/bench_operator.py --out bench-results/operator.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
