#!/usr/bin/env bash
# Install Debian's prometheus package (prometheus + promtool) when missing. Idempotent.
# The package would start a system service on :9090; tests run their own Prometheus, so the
# service is kept from starting (policy-rc.d) and stopped/disabled if it started anyway.
set -euo pipefail

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  echo "[install-prometheus] present: $(prometheus --version 2>&1 | head -n1)"
  exit 0
fi

SUDO=()
if [[ $(id -u) != 0 ]]; then SUDO=(sudo -n); fi
export DEBIAN_FRONTEND=noninteractive

# apt-get update only when the package index does not know the package yet (fresh machine).
# (Output captured first: with pipefail, `| grep -q` can fail the pipeline through SIGPIPE.)
policy=$(apt-cache policy prometheus 2>/dev/null || true)
if [[ $policy != *"Candidate: "[0-9]* ]]; then
  echo "[install-prometheus] apt-get update"
  "${SUDO[@]}" apt-get update -qq
fi

# policy-rc.d exit 101 = "action forbidden": invoke-rc.d/deb-systemd-invoke will not start the
# service during install. Only remove the file if we created it.
POLICY=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $POLICY ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod +x "$POLICY"
  created_policy=1
fi
cleanup() { if [[ $created_policy == 1 ]]; then "${SUDO[@]}" rm -f "$POLICY"; fi; }
trap cleanup EXIT

echo "[install-prometheus] apt-get install prometheus"
install() { "${SUDO[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
# A stale package index points at files the mirror no longer has: update once and retry.
if ! install; then
  echo "[install-prometheus] install failed; apt-get update and retry"
  "${SUDO[@]}" apt-get update -qq
  install
fi

# Belt and braces: if the service runs anyway, stop it and keep it from starting at boot.
if [[ -x /etc/init.d/prometheus ]] && /etc/init.d/prometheus status >/dev/null 2>&1; then
  echo "[install-prometheus] stopping the prometheus system service (it holds :9090)"
  "${SUDO[@]}" /etc/init.d/prometheus stop || true
fi
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
  "${SUDO[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
if command -v update-rc.d >/dev/null; then "${SUDO[@]}" update-rc.d prometheus disable >/dev/null 2>&1 || true; fi

echo "[install-prometheus] installed: $(prometheus --version 2>&1 | head -n1)"
