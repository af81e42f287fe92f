#!/usr/bin/env bash
# Installs what the tests and the demo need on a Debian machine: prometheus (which
# brings promtool; the monitoring tests also check and unit-test the rules with it),
# redis-server (the cache tests run a real one), openssl (the TLS test makes its
# certificates with it), curl (the demo script waits for Prometheus with it), chromium
# (the status page test renders the page in it, headless),
# and for the deployment tests kubernetes-validate from PyPI (offline Kubernetes schema
# validation; it brings PyYAML, which those tests also use to read the rendered
# manifests). kubectl (`kubectl kustomize`) is not in Debian's archive: the script only
# says when it is missing. Idempotent and quiet: does nothing and prints nothing when
# everything is present.
set -euo pipefail

# Pinned: the deployment tests validate against Kubernetes versions this release ships
# schemas for (tests/e2e/deploy.rs).
KUBERNETES_VALIDATE_VERSION=1.37.0

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
[ -x /usr/bin/chromium ] || need+=(chromium)
# `--bench`: also nginx, the caching proxy `make bench` compares against, and valgrind
# (`scripts/passthrough-instructions.sh` counts instructions with its callgrind).
if [ "${1:-}" = "--bench" ]; then
  command -v nginx >/dev/null 2>&1 || need+=(nginx)
  command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
fi
kubernetes_validate_ok() {
  python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('kubernetes-validate') != '$KUBERNETES_VALIDATE_VERSION')" >/dev/null 2>&1
}
if ! kubernetes_validate_ok; then
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust 1.88 or newer with rustup (https://rustup.rs)" >&2
  exit 1
fi
if ! command -v kubectl >/dev/null 2>&1; then
  echo "kubectl is missing: the deployment tests need it (https://kubernetes.io/docs/tasks/tools/)" >&2
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi

if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  echo "installing: ${need[*]}" >&2
  if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${need[@]}"; then
    "${sudo[@]}" apt-get update
    "${sudo[@]}" apt-get install -y --no-install-recommends "${need[@]}"
  fi
fi

# `python3 -m pip`, not `pip3`: the tests run `python3 -m kubernetes_validate`, so the
# package must be in this interpreter, whatever pip3 on PATH belongs to.
if ! kubernetes_validate_ok; then
  echo "installing: kubernetes-validate==$KUBERNETES_VALIDATE_VERSION (pip)" >&2
  pip_install=(python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location)
  if [ "$(id -u)" -eq 0 ]; then
    pip_install+=(--root-user-action=ignore)
  fi
  # Debian's own python3 refuses pip installs outside a virtualenv (PEP 668); the
  # package only adds its own modules, so installing it there anyway is harmless.
  if python3 -c "import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')))" 2>/dev/null; then
    pip_install+=(--break-system-packages)
  fi
  "${pip_install[@]}" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
