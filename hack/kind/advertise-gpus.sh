#!/usr/bin/env bash
# Advertise 8 nvidia.com/gpu on every kind worker labelled by hack/kind/cluster.yaml (the
# "advertise extended resources for a node" recipe of the Kubernetes docs). For `make kind-demo`.
set -euo pipefail
for node in $(kubectl get nodes -l nvidia.com/gpu.count -o name); do
  kubectl patch "$node" --subresource=status --type=json \
    -p '[{"op": "add", "path": "/status/capacity/nvidia.com~1gpu", "value": "8"}]'
done
kubectl get nodes -L nvidia.com/gpu.product -o custom-columns='NAME:.metadata.name,GPUS:.status.allocatable.nvidia\.com/gpu,PRODUCT:.metadata.labels.nvidia\.com/gpu\.product'
