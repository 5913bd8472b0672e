#!/usr/bin/env bash
# Stops the HAProxy started by deploy/lb-up.sh (TERM, up to 10 s, then KILL) and removes its pid file.
# Harmless when nothing is running. Uses the same LB_RUN_DIR as lb-up.sh (default var/lb).
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUN_DIR="${LB_RUN_DIR:-$(dirname "$DEPLOY_DIR")/var/lb}"
PID_FILE="$RUN_DIR/haproxy.pid"

if [[ ! -f "$PID_FILE" ]]; then
	echo "load balancer not running (no pid file in $RUN_DIR)"
	exit 0
fi
pid="$(cat "$PID_FILE" 2>/dev/null || true)"
if [[ ! "$pid" =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null || [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" != haproxy ]]; then
	rm -f "$PID_FILE"
	echo "load balancer not running (removed stale pid file, pid ${pid:-?})"
	exit 0
fi
kill -TERM "$pid" 2>/dev/null || true
for ((i = 0; i < 40; i++)); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.25
done
if kill -0 "$pid" 2>/dev/null; then
	echo "lb-down: HAProxy (pid $pid) still running after 10 s; sending KILL" >&2
	kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$PID_FILE" "$RUN_DIR/haproxy.sock"
echo "load balancer stopped (pid $pid)"
