#!/usr/bin/env bash
# Writes deploy/image/requirements.lock: what pip resolves for the module with its 'otel' extra, pinned.
# Needs the repo's .venv (make setup). Resolves only (pip --dry-run): nothing is installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCK="$ROOT/deploy/image/requirements.lock"
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
"$ROOT/.venv/bin/pip" install --quiet --dry-run --ignore-installed --report "$report" "$ROOT[otel]"
{
	sed -n '1,/^$/{/^#/p}' "$LOCK"
	python3 -c '
import json, sys
report = json.load(open(sys.argv[1]))
pins = sorted((i["metadata"]["name"].lower(), i["metadata"]["version"]) for i in report["install"])
print("\n".join(f"{name}=={version}" for name, version in pins if name != "rls-screen"))' "$report"
} >"$LOCK.new"
mv "$LOCK.new" "$LOCK"
echo "wrote $LOCK"
