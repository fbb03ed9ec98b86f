#!/usr/bin/env bash
# Every test: Python (pytest), then the Go and Java clients when present.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest -q "$@"
