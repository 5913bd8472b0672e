#!/usr/bin/env bash
# Stops the auth server started by deploy/auth-up.sh (same AUTH_RUN_DIR). Harmless when nothing runs.
set -euo pipefail
DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUN_DIR="${AUTH_RUN_DIR:-$DEPLOY_DIR/auth-server/.run}"
PID_FILE="$RUN_DIR/auth-server.pid"
[[ -f "$PID_FILE" ]] || { echo "auth server not running (no pid file in $RUN_DIR)"; exit 0; }
pid="$(cat "$PID_FILE" 2>/dev/null || true)"
if [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'auth-server/server\.mjs'; then
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 40; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
	kill -KILL "$pid" 2>/dev/null || true
	echo "auth server stopped (pid $pid)"
else
	echo "auth server not running (stale pid file)"
fi
rm -f "$PID_FILE"
