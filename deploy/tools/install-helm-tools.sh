#!/usr/bin/env bash
# Builds helm and kubeconform from the Go module proxy into .tools/bin at pinned versions, and makes the
# Kubernetes JSON schemas kubeconform validates against in .tools/kubernetes-json-schema. Idempotent: what
# is already there at its pinned version is kept. Needs Go 1.26 (the machine's own) and python3. Prints
# the bin directory. Used by `make deploy-check`; nothing here is committed (.tools/ is ignored).
#
# The schemas: kubeconform downloads them from a GitHub repository by default, which cannot be reached
# from here. They are made instead from the Kubernetes OpenAPI document that the Go module
# k8s.io/kubernetes carries (api/openapi-spec/swagger.json), fetched from the Go module proxy with
# `go mod download` (a module zip, nothing is built), by deploy/tools/k8s_json_schemas.py.
#
# The Go module and build caches are Go's own (go env GOMODCACHE / GOCACHE), not .tools/: a fresh clone
# on the same machine (CI) then builds from cache in seconds instead of downloading helm's dependencies again.
set -euo pipefail
HELM_VERSION="v3.22.0"
KUBECONFORM_VERSION="v0.8.0"
KUBERNETES_VERSION="1.35.4"  # the API the chart is checked against (kubeconform -kubernetes-version)
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
SCHEMAS="$ROOT/.tools/kubernetes-json-schema"
STRICT="$SCHEMAS/v$KUBERNETES_VERSION-standalone-strict"
if [[ ! -f "$STRICT/deployment-apps-v1.json" ]]; then
	echo "install-helm-tools: making the Kubernetes $KUBERNETES_VERSION JSON schemas from its OpenAPI" >&2
	module_dir="$(go mod download -json "k8s.io/kubernetes@v$KUBERNETES_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
	rm -rf "$STRICT.partial"
	python3 "$ROOT/deploy/tools/k8s_json_schemas.py" "$module_dir/api/openapi-spec/swagger.json" "$STRICT.partial" >&2
	rm -rf "$STRICT" && mv "$STRICT.partial" "$STRICT"
fi
echo "$BIN"
