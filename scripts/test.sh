#!/usr/bin/env bash
# Every test: Python (pytest), then the Go and Java clients' own tests.
# scripts/setup.sh (run by `make test`) has installed what they need.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest -q "$@"
(cd clients/go && go vet ./... && go test -count=1 ./...)
(cd clients/java && mvn -B test | grep -E "Tests run:|BUILD|ERROR|FAIL")
