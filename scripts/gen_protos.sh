#!/usr/bin/env bash
# Generates the committed code for the CouponRank API (protos/) — idempotent.
#
#   scripts/gen_protos.sh               regenerate in place:
#                                         couponrank/v1/*_pb2*.py{,i}     (Python)
#                                         clients/go/couponrankv1/*.pb.go (Go)
#   scripts/gen_protos.sh --out DIR     write the same files under DIR instead
#                                         (DIR/couponrank/v1, DIR/clients/go/couponrankv1);
#                                         tests/test_protos.py uses this to check that
#                                         the committed code is up to date
#   scripts/gen_protos.sh --python-only skip Go (no Go toolchain needed)
#
# Tools, all pinned:
#   protoc          from grpcio-tools (pyproject.toml, dev extra): python -m grpc_tools.protoc
#   Python plugins  the same grpcio-tools (--python_out, --pyi_out, --grpc_python_out)
#   Go plugins      protoc-gen-go / protoc-gen-go-grpc at the versions in clients/go/go.mod
#                   (`tool` directives), built into clients/go/bin/ (gitignored)
# Java is generated at build time by Maven (clients/java/pom.xml), not here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT"
GO=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) OUT="$(mkdir -p "$2" && cd "$2" && pwd)"; shift 2 ;;
    --python-only) GO=0; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "gen_protos.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done

PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON="python3"; fi
fi
PROTOC=("$PYTHON" -m grpc_tools.protoc)
PROTO_DIR="$ROOT/protos"
GO_MODULE="github.com/couponrank/couponrank/clients/go"

cd "$ROOT"
# Paths relative to protos/ so the generated code refers to couponrank/v1/...
mapfile -t PROTOS < <(cd "$PROTO_DIR" && find couponrank -name '*.proto' | LC_ALL=C sort)

# ---- Python: import path couponrank.v1.coupon_ranking_service_pb2 --------------
mkdir -p "$OUT/couponrank/v1"
# Remove stale generated files (a deleted .proto must not leave its module behind);
# couponrank/v1/__init__.py is hand-written and kept.
find "$OUT/couponrank/v1" -maxdepth 1 \( -name '*_pb2.py' -o -name '*_pb2.pyi' -o -name '*_pb2_grpc.py' \) -delete
"${PROTOC[@]}" -I "$PROTO_DIR" \
  --python_out="$OUT" --pyi_out="$OUT" --grpc_python_out="$OUT" \
  "${PROTOS[@]}"
[[ -f "$OUT/couponrank/v1/__init__.py" ]] || printf '"""couponrank/v1"""\n' >"$OUT/couponrank/v1/__init__.py"

# ---- Go: package couponrankv1 in module clients/go ------------------------------
if [[ "$GO" == 1 ]]; then
  GOBIN_DIR="$ROOT/clients/go/bin"
  # Build the plugins at the versions pinned in clients/go/go.mod (fast no-op when
  # they are already built and cached).
  (cd "$ROOT/clients/go" && GOBIN="$GOBIN_DIR" go install \
    google.golang.org/protobuf/cmd/protoc-gen-go \
    google.golang.org/grpc/cmd/protoc-gen-go-grpc)
  mkdir -p "$OUT/clients/go/couponrankv1"
  find "$OUT/clients/go/couponrankv1" -maxdepth 1 -name '*.pb.go' -delete
  "${PROTOC[@]}" -I "$PROTO_DIR" \
    --plugin=protoc-gen-go="$GOBIN_DIR/protoc-gen-go" \
    --plugin=protoc-gen-go-grpc="$GOBIN_DIR/protoc-gen-go-grpc" \
    --go_out="$OUT/clients/go" --go_opt=module="$GO_MODULE" \
    --go-grpc_out="$OUT/clients/go" --go-grpc_opt=module="$GO_MODULE" \
    "${PROTOS[@]}"
fi
echo "gen_protos.sh: generated into $OUT"
