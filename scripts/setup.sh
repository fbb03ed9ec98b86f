#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian machine, idempotently:
# Debian's redis-server (Redis online-store tests), a Python venv with the pinned
# dependencies, and the Go / Java client toolchains' dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

if ! command -v redis-server >/dev/null; then
  echo "setup: installing redis-server from Debian's packages"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q redis-server
fi

# Python: reinstall only when pyproject.toml changed since the last setup.
stamp=.venv/.setup-stamp
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating .venv and installing pinned Python dependencies"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi

if [ -x scripts/setup_clients.sh ]; then
  scripts/setup_clients.sh
fi
