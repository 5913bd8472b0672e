#!/usr/bin/env bash
# Installs the vegeta HTTP load generator (constant request rate, per-request headers and bodies,
# HDR latency percentiles) into .tools/bin from the Go module proxy, at a pinned version.
# Needs Go (1.22+). Prints the binary's path. Used by bench/cds_bench.py; nothing here is committed.
set -euo pipefail
VERSION="v12.12.0"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="$ROOT/.tools/bin"
if [[ -x "$BIN/vegeta" ]] && [[ "$(cat "$BIN/vegeta.version" 2>/dev/null)" == "$VERSION" ]]; then
    echo "$BIN/vegeta"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    echo "install-vegeta: Go is not installed (https://go.dev/dl/); the CDS load benchmark needs it" >&2
    exit 3
fi
mkdir -p "$BIN"
export GOBIN="$BIN" GOPATH="$ROOT/.tools/go" GOFLAGS="-modcacherw"
go install "github.com/tsenart/vegeta/v12@$VERSION" >&2
echo "$VERSION" >"$BIN/vegeta.version"  # `go install` leaves the binary's own version string empty
echo "$BIN/vegeta"
