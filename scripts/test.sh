#!/usr/bin/env bash
# Every test: Python (pytest), the Go and Java clients' own tests, and the
# cross-language contract tests. scripts/setup.sh (run by `make test`) has installed
# what they need.
#
# Contract tests: scripts/contract_server.py builds a tiny served workspace, starts the
# real gRPC server on a loopback port and writes scenarios with the answers the same
# server gives in process. The Python, Go and Java contract tests (COUPONRANK_CONTRACT_ADDR,
# COUPONRANK_CONTRACT_DIR) run them with their client and write DIR/<language>.jsonl;
# scripts/contract_check.py then checks all three ran and agree. The contract server's
# data ends on a pinned day and its clock is pinned, whatever the date.
set -euo pipefail
cd "$(dirname "$0")/.."

contract=$(mktemp -d "${TMPDIR:-/tmp}/couponrank-contract.XXXXXX")
.venv/bin/python scripts/contract_server.py --dir "$contract" >"$contract/server.log" 2>&1 &
server=$!
finish() {
  status=$?
  kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  if [ "$status" -eq 0 ]; then
    rm -rf "$contract"
  else
    echo "test.sh: contract scenarios, answers and server log kept in $contract" >&2
  fi
}
trap finish EXIT

# The server builds its workspace first (~20 s); give it up to 5 minutes.
for _ in $(seq 600); do
  [ -e "$contract/server.json" ] && break
  if ! kill -0 "$server" 2>/dev/null; then
    echo "test.sh: the contract server stopped before it was ready:" >&2
    tail -n 30 "$contract/server.log" >&2
    exit 1
  fi
  sleep 0.5
done
if [ ! -e "$contract/server.json" ]; then
  echo "test.sh: the contract server was not ready after 5 minutes; log: $contract/server.log" >&2
  exit 1
fi
export COUPONRANK_CONTRACT_DIR="$contract"
COUPONRANK_CONTRACT_ADDR=$(.venv/bin/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["addr"])' \
  "$contract/server.json")
export COUPONRANK_CONTRACT_ADDR

.venv/bin/python -m pytest -q "$@"
# The date-sensitive tests (marker `clock`) again, with couponrank's clock ten years
# ahead: no test may depend on the day it runs (tests/conftest.py moves the clock).
COUPONRANK_TEST_CLOCK_AHEAD_DAYS=3653 .venv/bin/python -m pytest -q -m clock "$@" || {
  status=$?; [ "$status" -eq 5 ] || exit "$status"  # 5: the arguments selected no date-sensitive test
}
(cd clients/go && go vet ./... && go test -count=1 ./...)
(cd clients/java && mvn -B test | grep -E "Tests run:|BUILD|ERROR|FAIL")
if [ "$#" -eq 0 ]; then
  .venv/bin/python scripts/contract_check.py "$contract"
else
  echo "test.sh: pytest arguments given, so the Python contract test may not have run; cross-language check skipped"
fi
