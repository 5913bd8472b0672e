#!/usr/bin/env bash
# Builds helm and kubeconform from the Go module proxy into .tools/bin at pinned versions, and makes the
# Kubernetes JSON schemas kubeconform validates against (deploy/tools/k8s-schemas.sh). Idempotent: a
# binary already built at its pinned version is kept. Needs Go 1.26 (the machine's own). Prints the bin
# directory. Used by `make deploy-check`; nothing here is committed (.tools/ is ignored).
#
# The Go module and build caches are Go's own (go env GOMODCACHE / GOCACHE), not .tools/: a fresh clone
# on the same machine (CI) then builds from cache in seconds instead of downloading helm's dependencies again.
set -euo pipefail
HELM_VERSION="v3.22.0"
KUBECONFORM_VERSION="v0.8.0"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="$ROOT/.tools/bin"

if ! command -v go >/dev/null 2>&1; then
	echo "install-helm-tools: Go is not installed; make deploy-check needs it to build helm and kubeconform" >&2
	exit 3
fi
mkdir -p "$BIN"
export GOBIN="$BIN" GOFLAGS="-modcacherw -buildvcs=false" CGO_ENABLED=0

install() { # $1 = binary name, $2 = package path, $3 = version
	if [[ -x "$BIN/$1" ]] && [[ "$(cat "$BIN/$1.version" 2>/dev/null)" == "$3" ]]; then
		return 0
	fi
	echo "install-helm-tools: building $1 $3 (first time only: a few minutes)" >&2
	go install "$2@$3" >&2
	echo "$3" >"$BIN/$1.version"  # `go install` leaves the binaries' own version strings empty
}

install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
install kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
echo "$BIN"
