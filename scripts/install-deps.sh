#!/usr/bin/env bash
# Installs what the tests and the demo need on a Debian machine: prometheus (which
# brings promtool), redis-server (the cache tests run a real one), openssl (the TLS test makes its certificates with it) and curl
# (the demo script waits for Prometheus with it). Idempotent: does nothing when everything is present.
set -euo pipefail

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
# `--bench`: also nginx, the caching proxy `make bench` compares against.
if [ "${1:-}" = "--bench" ]; then
  command -v nginx >/dev/null 2>&1 || need+=(nginx)
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust 1.88 or newer with rustup (https://rustup.rs)" >&2
  exit 1
fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
echo "installing: ${need[*]}" >&2
if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${need[@]}"; then
  "${sudo[@]}" apt-get update
  "${sudo[@]}" apt-get install -y --no-install-recommends "${need[@]}"
fi
