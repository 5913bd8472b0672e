#!/usr/bin/env bash
# Stops the local PostgreSQL server started by deploy/db-up.sh (same DB_PORT / DB_RUN_DIR). Keeps its data;
# `DB_DROP=1` also deletes the cluster directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${DB_PORT:-55432}"
RUN_DIR="${DB_RUN_DIR:-$ROOT/var/postgres-$PORT}"
DATA="$RUN_DIR/data"
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"

if [[ -n "$BIN" && -f "$DATA/postmaster.pid" ]]; then
	if [[ "$(id -u)" == 0 ]]; then
		runuser -u postgres -- "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null || true
	else
		"$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null || true
	fi
	echo "PostgreSQL on 127.0.0.1:$PORT stopped"
else
	echo "db-down: no server of $DATA is running"
fi
if [[ "${DB_DROP:-0}" == 1 ]]; then rm -rf "$RUN_DIR"; fi
