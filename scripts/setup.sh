#!/usr/bin/env bash
# Usage: scripts/setup.sh
# Installs the system packages the build needs when they are missing: Debian's librocksdb-dev
# (the rocksdb crate links it; see the README's build notes), libclang-dev (bindgen) and curl
# (the interop script talks to the admin API with it), and wrk (the paid HTTP benchmark).
# Idempotent and quiet; needs root (or sudo) only when something is missing.
set -euo pipefail
packages=(librocksdb-dev libclang-dev curl wrk)
if dpkg -s "${packages[@]}" >/dev/null 2>&1; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "installing ${packages[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
