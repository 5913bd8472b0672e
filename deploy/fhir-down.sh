#!/usr/bin/env bash
# Stops the FHIR server started by deploy/fhir-up.sh (TERM, up to 30 s, then KILL) and removes its pid file.
# Harmless when nothing is running. Uses the same FHIR_RUN_DIR as fhir-up.sh (default deploy/fhir-server/.run).
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUN_DIR="${FHIR_RUN_DIR:-$DEPLOY_DIR/fhir-server/.run}"
PID_FILE="$RUN_DIR/fhir-server.pid"
PORT_FILE="$RUN_DIR/fhir-server.port"

if [[ ! -f "$PID_FILE" ]]; then
	echo "FHIR server not running (no pid file in $RUN_DIR)"
	exit 0
fi
pid="$(cat "$PID_FILE" 2>/dev/null || true)"
if [[ ! "$pid" =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null; then
	rm -f "$PID_FILE" "$PORT_FILE"
	echo "FHIR server not running (removed stale pid file, pid ${pid:-?})"
	exit 0
fi
if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'fhir-server\.jar'; then
	rm -f "$PID_FILE" "$PORT_FILE"
	echo "FHIR server not running (pid $pid now belongs to another program; left it alone, removed the pid file)"
	exit 0
fi

t0=$SECONDS
kill -TERM "$pid" 2>/dev/null || true
for ((i = 0; i < 60; i++)); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.5
done
if kill -0 "$pid" 2>/dev/null; then
	echo "fhir-down: server (pid $pid) still running after 30 s; sending KILL" >&2
	kill -KILL "$pid" 2>/dev/null || true
	for ((i = 0; i < 20; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
fi
rm -f "$PID_FILE" "$PORT_FILE"
echo "FHIR server stopped (pid $pid, $((SECONDS - t0))s)"
