#!/usr/bin/env bash
# Usage: scripts/setup.sh
# Installs the system packages the build needs when they are missing: Debian's librocksdb-dev
# (the rocksdb crate links it; see the README's build notes), libclang-dev (bindgen) and curl
# (the interop script talks to the admin API with it), and wrk (the paid HTTP benchmark); then
# the local Ethereum chain of the settlement tests (ganache, `npm ci` in scripts/ganache; the
# tests would install it themselves, this only does it up front).
# Idempotent and quiet; needs root (or sudo) only when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(librocksdb-dev libclang-dev curl wrk)
if ! dpkg -s "${packages[@]}" >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  echo "installing ${packages[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
fi
if [ ! -f scripts/ganache/node_modules/ganache/package.json ]; then
  echo "installing ganache (scripts/ganache)"
  (cd scripts/ganache && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
