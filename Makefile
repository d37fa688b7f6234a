# gpualloc developer targets. Every target depends on `setup` (the .venv).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= hack/profiles/default.yaml
export GPUALLOC_CACHE ?= $(HOME)/.cache/gpualloc

.PHONY: setup deps lint typecheck test test-unit test-cluster cluster-up cluster-down cluster-status bench bench-sim clean \
	demo demo-down generate dashboards manifests helm-lint prometheus-up prometheus-down kind-demo bench-planner bench-operator

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

# every hack/ script is linted; the observability ones are strictly typed too (typecheck);
# lint-imports checks the import layers of DESIGN.md section 2 (pyproject [tool.importlinter])
HACK_PY := hack

lint: setup
	$(BIN)/ruff check operator tests $(HACK_PY)
	$(BIN)/ruff format --check operator tests $(HACK_PY)
	$(BIN)/lint-imports --no-cache --no-logo

typecheck: setup
	$(BIN)/mypy
	$(BIN)/mypy --strict hack/gen_dashboard.py hack/gen_manifests.py hack/localprom.py \
		hack/fake_dcgm_exporter.py hack/render_dashboard_preview.py

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

# Regenerate the CRDs (crds/ and the Helm chart's copies) from hack/gen_crds.py, the dashboard
# and the kustomize base.
generate: setup
	$(BIN)/python hack/gen_crds.py
	$(BIN)/python hack/gen_dashboard.py
	$(BIN)/python hack/gen_manifests.py

# The Grafana dashboard (helm/gpualloc/files/dashboard.json) from hack/gen_dashboard.py.
dashboards: setup
	$(BIN)/python hack/gen_dashboard.py

# manifests/ (kustomize base) from the Helm chart's defaults; run after chart changes.
manifests: setup deps
	$(BIN)/python hack/gen_manifests.py

helm-lint: setup deps
	$$(ls -d $(GPUALLOC_CACHE)/bin/helm-*/helm | tail -n1) lint --strict helm/gpualloc

# Real Prometheus for the local cluster, scraping the operator (METRICS, default
# 127.0.0.1:8080) and the fake DCGM exporter of the cluster's GPU nodes.
METRICS ?= 127.0.0.1:8080
prometheus-up: setup deps
	$(BIN)/python hack/localprom.py start --target gpualloc=$(METRICS) --dcgm

prometheus-down: setup
	$(BIN)/python hack/localprom.py stop

# For users with Docker (not run by the test suite: no Docker here): a kind cluster whose
# workers advertise fake GPUs, the operator image, the chart and the sample jobs.
KIND_CLUSTER ?= gpualloc
kind-demo:
	kind create cluster --name $(KIND_CLUSTER) --config hack/kind/cluster.yaml
	docker build -t gpualloc:dev .
	kind load docker-image gpualloc:dev --name $(KIND_CLUSTER)
	hack/kind/advertise-gpus.sh
	helm install gpualloc helm/gpualloc -n gpualloc-system --create-namespace --wait \
		--set image.repository=gpualloc,image.tag=dev,image.pullPolicy=Never
	kubectl apply -f manifests/samples/
	kubectl get gpualloc -A

cluster-status: setup
	$(BIN)/python hack/localcluster.py status

# Benchmarks, JSON in bench-results/: the planner on synthetic 1k/10k-node clusters against
# greedy baselines, the operator end to end on 200 kwok nodes against kube-scheduler alone,
# and the trace-driven simulator (openb, Philly).
bench: bench-planner bench-operator bench-sim

bench-planner: setup
	$(BIN)/gpualloc bench planner --out bench-results/planner.json

# Topology-aware gangs (issue 13.1, docs/topology-benchmark.md): the planner at 1,000 nodes in a
# 4-level topology against the same instance without it, and the share of multi-node gangs
# inside one domain against topology-unaware best-fit; requests down to the clique, then rack.
.PHONY: bench-topology
bench-topology: setup
	nice -n 10 $(BIN)/python hack/bench_topology.py --out bench-results/topology.json
	nice -n 10 $(BIN)/python hack/bench_topology.py --finest rack --out bench-results/topology-rack.json

# OPERATOR_BENCH=200: 200 nodes, a burst of 500 jobs; OPERATOR_BENCH=1000: 1,000 nodes, a burst
# of 5,000 pods (about 13 min on 2 cores). Each also times kube-scheduler alone on the same pods.
OPERATOR_BENCH ?= 200
OPERATOR_BENCH_ARGS_200 := --out bench-results/operator.json
OPERATOR_BENCH_ARGS_1000 := --profile hack/profiles/bench-1000.yaml --pods 5000 \
	--state-dir /tmp/gpualloc-bench-cluster-1000 --out bench-results/operator-1000.json
bench-operator: setup deps
	$(if $(OPERATOR_BENCH_ARGS_$(OPERATOR_BENCH)),,$(error OPERATOR_BENCH is 200 or 1000))
	$(BIN)/python hack/bench_operator.py $(OPERATOR_BENCH_ARGS_$(OPERATOR_BENCH))

# Trace-driven simulator: openb (3 pod lists x 5 policies x SEEDS) and Philly gangs;
# JSON and tables in bench-results/, plot in docs/simulator-openb.png. About 3 min on 2 cores.
# Then the time-driven simulator on a short Philly window per seed (6 h of arrivals, every
# job followed to completion; 4 policies): bench-results/bench-time-6h.{json,md} and
# docs/simulator-philly-6h.png. The 72-hour windows: docs/benchmarks.md, "Time-driven simulator".
SEEDS ?= 42,43,44
BATCH ?= 8
bench-sim: setup
	$(BIN)/python -m gpualloc.sim.bench_sim --seeds $(SEEDS) --batch $(BATCH) --jobs 2 \
		--plot bench-results/simulator-openb-short.png
	$(BIN)/python -m gpualloc.sim.bench_time --seeds $(SEEDS) --hours 6 --load 1.2 --jobs 2 \
		--name bench-time-6h --plot docs/simulator-philly-6h.png

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
