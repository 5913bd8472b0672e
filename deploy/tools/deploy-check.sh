#!/usr/bin/env bash
# `make deploy-check`: the Helm chart lints, renders, and every object it renders is valid for Kubernetes
# (kubeconform -strict against the schemas of KUBERNETES_VERSION), for the minimal and the all-on values;
# and the chart refuses what cannot work (several replicas or autoscaling on SQLite state, no publicUrl).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="$("$ROOT/deploy/tools/install-helm-tools.sh")"
KUBERNETES_VERSION="$(sed -n 's/^KUBERNETES_VERSION="\([0-9.]*\)".*/\1/p' "$ROOT/deploy/tools/install-helm-tools.sh")"
CHART="$ROOT/deploy/helm/rls-screen"
SCHEMAS="$ROOT/.tools/kubernetes-json-schema"
export HELM_CACHE_HOME="$ROOT/.tools/helm/cache" HELM_CONFIG_HOME="$ROOT/.tools/helm/config" HELM_DATA_HOME="$ROOT/.tools/helm/data"

for values in minimal-values.yaml ci-values.yaml; do
	"$BIN/helm" lint --strict "$CHART" -f "$ROOT/deploy/helm/$values" --kube-version "$KUBERNETES_VERSION"
	"$BIN/helm" template rls-screen "$CHART" -f "$ROOT/deploy/helm/$values" --kube-version "$KUBERNETES_VERSION" |
		"$BIN/kubeconform" -strict -summary -kubernetes-version "$KUBERNETES_VERSION" -schema-location "$SCHEMAS"
done

refused() { # $1 = what the chart must refuse (its message), then helm template arguments
	local expected="$1" output
	shift
	if output="$("$BIN/helm" template rls-screen "$CHART" --kube-version "$KUBERNETES_VERSION" "$@" 2>&1)"; then
		echo "deploy-check: the chart rendered with $* but must refuse it" >&2
		exit 1
	fi
	grep -qF "$expected" <<<"$output" || { echo "deploy-check: expected '$expected', got: $output" >&2; exit 1; }
}
minimal=(-f "$ROOT/deploy/helm/minimal-values.yaml")
refused "replicaCount > 1 needs stateStore: postgresql" "${minimal[@]}" --set replicaCount=2
refused "autoscaling needs stateStore: postgresql" "${minimal[@]}" --set autoscaling.enabled=true
refused "publicUrl is required" "${minimal[@]}" --set publicUrl=
refused "secrets.trustedIssuers" "${minimal[@]}" --set secrets.trustedIssuers=
echo "deploy-check: chart valid for Kubernetes $KUBERNETES_VERSION (helm lint, kubeconform -strict); refusals hold"
