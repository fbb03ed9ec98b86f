#!/usr/bin/env bash
# Installs what the Go and Java clients need to build and test — idempotent, safe to
# re-run; a no-op (a few seconds) when everything is already there.
#
#   scripts/setup_clients.sh            both clients
#   scripts/setup_clients.sh --go       Go only
#   scripts/setup_clients.sh --java     Java only
#
# Go   (clients/go): needs Go >= the `go` line of clients/go/go.mod on PATH. Downloads the
#      module's dependencies (Go module proxy), builds the pinned protoc plugins
#      (protoc-gen-go, protoc-gen-go-grpc: `tool` lines of go.mod) into clients/go/bin/,
#      and compiles packages and tests so `go test ./...` starts warm.
# Java (clients/java): needs JDK >= 17 and Maven >= 3.8 (installed with apt-get when
#      missing and run as root). Resolves dependencies, protoc and protoc-gen-grpc-java
#      from Maven Central into ~/.m2 and builds the jar plus target/classpath.txt.
#
# Afterwards:
#   (cd clients/go && go vet ./... && go test ./...)
#   (cd clients/java && mvn -B test)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DO_GO=1
DO_JAVA=1
case "${1:-}" in
  "") ;;
  --go) DO_JAVA=0 ;;
  --java) DO_GO=0 ;;
  -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
  *) echo "setup_clients.sh: unknown argument: $1" >&2; exit 2 ;;
esac

log() { printf 'setup_clients: %s\n' "$*"; }

# version_ge A B: is dotted version A >= B?
version_ge() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]; }

if [[ "$DO_GO" == 1 ]]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "setup_clients: go not found on PATH (need Go >= $(awk '/^go /{print $2}' "$ROOT/clients/go/go.mod"))" >&2
    exit 1
  fi
  need="$(awk '/^go /{print $2}' "$ROOT/clients/go/go.mod")"
  have="$(go env GOVERSION | sed 's/^go//')"
  if ! version_ge "$have" "$need"; then
    echo "setup_clients: Go $have is older than $need (clients/go/go.mod)" >&2
    exit 1
  fi
  log "Go $have: downloading modules, building protoc plugins into clients/go/bin"
  (
    cd "$ROOT/clients/go"
    go mod download
    GOBIN="$ROOT/clients/go/bin" go install \
      google.golang.org/protobuf/cmd/protoc-gen-go \
      google.golang.org/grpc/cmd/protoc-gen-go-grpc
    go build ./...
    go test -count=1 -run '^$' ./... >/dev/null
  )
  log "Go: $("$ROOT/clients/go/bin/protoc-gen-go" --version), $("$ROOT/clients/go/bin/protoc-gen-go-grpc" --version)"
fi

if [[ "$DO_JAVA" == 1 ]]; then
  if ! command -v mvn >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
      log "installing a JDK and Maven with apt-get"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null
    else
      echo "setup_clients: need javac (JDK >= 17) and mvn (Maven >= 3.8) on PATH" >&2
      exit 1
    fi
  fi
  jv="$(javac -version 2>&1 | awk '{print $2}')"
  if ! version_ge "$jv" "17"; then
    echo "setup_clients: JDK $jv is older than 17" >&2
    exit 1
  fi
  log "JDK $jv: resolving Maven dependencies and building clients/java"
  (cd "$ROOT/clients/java" && mvn -B -q -Dstyle.color=never -DskipTests package)
  log "Java: built $(cd "$ROOT/clients/java" && ls target/*.jar)"
fi
log "done"
