#!/usr/bin/env bash
# Build the local cluster's binaries from the Go module proxy into a cache outside the repo:
#   ${GPUALLOC_CACHE:-$HOME/.cache/gpualloc}/bin/<component>-<version>/<binary>
# A component dir only appears (atomic mv) after a complete build, so it is never rebuilt and
# an interrupted build is never mistaken for a cached one. See hack/README.md.
set -euo pipefail

HACK="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$HACK/versions.env"
CACHE="${GPUALLOC_CACHE:-$HOME/.cache/gpualloc}"
BIN="$CACHE/bin"
LOGS="$CACHE/logs"
mkdir -p "$BIN" "$LOGS"

export CGO_ENABLED=0
# -p=2: two cores; -mod=mod lets the throwaway modules resolve their requirements on the fly.
export GOFLAGS="-p=2 -buildvcs=false -mod=mod"
# Never download another Go toolchain behind our back; a too-old Go then fails loudly.
export GOTOOLCHAIN=local
START=$SECONDS
TOTAL=4
STEP=0

elapsed() { local s=$((SECONDS - ${1:-$START})); printf '%dm%02ds' $((s / 60)) $((s % 60)); }
say() { echo "[build-binaries $(elapsed)] $*"; }

# Runs "$@" with output in $log and prints a heartbeat each minute so CI shows progress.
# The build step runs in a fresh bash (functions exported) because bash silently ignores
# `set -e` in anything called from an `if`/`||`, which would hide a failed step.
# Sets RUN_RC to its exit status.
run_logged() {
  local log=$1; shift
  local t0=$SECONDS
  ( while sleep 60 </dev/null >/dev/null 2>&1; do say "  ... still building $CURRENT ($(elapsed "$t0") for this step)"; done ) &
  local ticker=$!
  bash -euo pipefail -c '"$@"' run_logged "$@" >>"$log" 2>&1 &
  local pid=$!
  RUN_RC=0
  wait "$pid" || RUN_RC=$?
  kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true
}

# Reports the first candidate version already in the cache, if any.
cached_version() {
  local comp=$1; shift
  local v
  for v in "$@"; do
    if [[ -d "$BIN/$comp-$v" ]]; then echo "$v"; return 0; fi
  done
  return 1
}

# build_component COMPONENT BUILD_FN VERSION [FALLBACK...]: BUILD_FN VERSION OUTDIR WORKDIR
# fills OUTDIR; on failure the next version is tried and the failure is appended to
# $BIN/build-failures.log (for the README).
build_component() {
  local comp=$1 fn=$2; shift 2
  STEP=$((STEP + 1))
  local v
  if v=$(cached_version "$comp" "$@"); then
    say "[$STEP/$TOTAL] $comp $v: cached in $BIN/$comp-$v"
    return 0
  fi
  for v in "$@"; do
    local t0=$SECONDS
    local tmp work log="$LOGS/$comp-$v.log"
    tmp=$(mktemp -d "$BIN/.tmp-$comp-$v.XXXXXX")
    work=$(mktemp -d "${TMPDIR:-/tmp}/gpualloc-build-$comp.XXXXXX")
    : >"$log"
    CURRENT="$comp $v"
    say "[$STEP/$TOTAL] $comp $v: building (log: $log)"
    run_logged "$log" "$fn" "$v" "$tmp" "$work"
    if [[ $RUN_RC == 0 ]]; then
      rm -rf "$work"
      mv -T "$tmp" "$BIN/$comp-$v"
      echo "$(date -u +%FT%TZ) $comp $v $((SECONDS - t0))s" >>"$BIN/build-times.log"
      say "[$STEP/$TOTAL] $comp $v: done in $(elapsed "$t0"): $(ls "$BIN/$comp-$v" | tr '\n' ' ')"
      return 0
    fi
    rm -rf "$tmp" "$work"
    say "[$STEP/$TOTAL] $comp $v: FAILED after $(elapsed "$t0"); last lines of $log:"
    tail -n 20 "$log" | sed 's/^/    /'
    echo "$(date -u +%FT%TZ) $comp $v (exit $RUN_RC): $(tail -n 3 "$log" | tr -s "\n\t" "  ")" \
      >>"$BIN/build-failures.log"
  done
  say "[$STEP/$TOTAL] $comp: no candidate version built ($*)"
  return 1
}

# etcd: server/v3's go.mod replaces its sibling modules with ../ paths, so `go install @v` is
# refused; a throwaway module that requires it builds it (siblings resolve to the same version).
build_etcd() {
  local v=$1 out=$2 work=$3
  cd "$work"
  go mod init gpualloc.local/build-etcd
  go get "go.etcd.io/etcd/server/v3@$v"
  go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3
  "$out/etcd" --version
}

# k8s: k8s.io/kubernetes replaces ~31 staging modules with ./staging paths; the throwaway module
# replaces each with its published k8s.io/X v0.<minor>.<patch>.
build_kubernetes() {
  local v=$1 out=$2 work=$3
  local minor=${v#v1.}; minor=${minor%%.*}
  local staging="v0.${v#v1.}"
  cd "$work"
  go mod init gpualloc.local/build-kubernetes
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')
  local mods
  mods=$(sed -n 's#^\s*\(k8s.io/[^ ]*\) => ./staging/.*#\1#p' "$gomod")
  [[ -n "$mods" ]] || { echo "no staging replaces found in $gomod"; return 1; }
  local m
  for m in $mods; do go mod edit -replace "$m=$m@$staging"; done
  go mod edit -require "k8s.io/kubernetes@$v"
  local pkg=k8s.io/component-base/version cgo=k8s.io/client-go/pkg/version
  local date
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ld="-s -w"
  for p in $pkg $cgo; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  # One go build for all four shares the compilation of the common dependencies.
  go build -trimpath -ldflags "$ld" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  "$out/kubectl" version --client
  "$out/kube-apiserver" --version
}

# kwok has no replaces: go install works. Standalone kwok needs stage definitions; copy the
# ones we use from the module source next to the binary.
build_kwok() {
  local v=$1 out=$2 work=$3
  cd "$work"
  GOBIN="$out" go install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$v" "sigs.k8s.io/kwok/cmd/kwok@$v"
  local src
  src=$(go mod download -json "sigs.k8s.io/kwok@$v" | sed -n 's/^\s*"Dir": "\(.*\)",\?$/\1/p')
  mkdir -p "$out/stages"
  # The "fast" variants (as kwokctl uses): pods go straight to Running, deletions finish at once.
  local s
  for s in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
    pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    cp "$src/kustomize/stage/$s.yaml" "$out/stages/" || return 1
  done
  chmod -R u+w "$out/stages"
  "$out/kwok" --version
}

# helm has no replaces either. Stamp its version and the Kubernetes version it assumes
# (Capabilities.KubeVersion) to match the cluster.
build_helm() {
  local v=$1 out=$2 work=$3
  local kminor=${KUBE_USED#v1.}; kminor=${kminor%%.*}
  cd "$work"
  local ld="-s -w -X helm.sh/helm/v3/internal/version.version=$v"
  ld+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
  ld+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kminor"
  ld+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
  ld+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kminor"
  GOBIN="$out" go install -trimpath -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$v"
  "$out/helm" version
}

export -f build_etcd build_kubernetes build_kwok build_helm
say "cache: $BIN (Go $(go env GOVERSION), GOFLAGS=$GOFLAGS)"
# shellcheck disable=SC2086  # fallback lists are space-separated on purpose
build_component etcd build_etcd "$ETCD_VERSION"
# shellcheck disable=SC2086
build_component kubernetes build_kubernetes "$KUBE_VERSION" $KUBE_FALLBACKS
# shellcheck disable=SC2086
export KUBE_USED
KUBE_USED=$(cached_version kubernetes "$KUBE_VERSION" $KUBE_FALLBACKS)
build_component kwok build_kwok "$KWOK_VERSION"
# shellcheck disable=SC2086
build_component helm build_helm "$HELM_VERSION" $HELM_FALLBACKS
say "all $TOTAL components ready in $BIN (total $(elapsed))"
