#!/usr/bin/env bash
# Starts the local SMART authorization server (deploy/auth-server: oidc-provider from npm) in the background
# and waits until it answers. Development and tests only.
#
#   AUTH_PORT           port on 127.0.0.1 (default 8095)
#   AUTH_RUN_DIR        pid/log/admin-token directory (default deploy/auth-server/.run)
#   AUTH_FHIR_BASES     FHIR servers it issues tokens for (default $FHIR_BASE_URL or http://127.0.0.1:8080/fhir)
#   AUTH_CLIENTS_FILE   registered clients (default deploy/auth-server/clients.json)
#   AUTH_USERS_FILE     users who can sign in (default deploy/auth-server/users.json)
#   AUTH_ADMIN_TOKEN    the EHR's secret for POST /ehr/launch (default: made once, kept in AUTH_RUN_DIR/admin-token)
#
# Installs the pinned npm packages (npm ci) on first use. Prints "auth server ready at URL (pid N)" and exits 0,
# or exits non-zero with the reason and the tail of the log.
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SERVER_DIR="$DEPLOY_DIR/auth-server"
PORT="${AUTH_PORT:-8095}"
RUN_DIR="${AUTH_RUN_DIR:-$SERVER_DIR/.run}"
PID_FILE="$RUN_DIR/auth-server.pid"
LOG_FILE="$RUN_DIR/auth-server.log"
URL="http://127.0.0.1:$PORT"

die() { echo "auth-up: error: $*" >&2; exit 1; }
[[ "$PORT" =~ ^[0-9]+$ && "$PORT" -ge 1 && "$PORT" -le 65535 ]] || die "AUTH_PORT must be a port number, got '$PORT'"
command -v node >/dev/null 2>&1 || die "node (20.19 or later) is required (apt-get install nodejs npm)"
command -v curl >/dev/null 2>&1 || die "curl is required (apt-get install curl)"

alive() { [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q 'auth-server/server\.mjs'; }
healthy() { [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$URL/.well-known/openid-configuration" 2>/dev/null || true)" == 200 ]]; }

mkdir -p "$RUN_DIR"
exec 9>"$RUN_DIR/auth-up.lock"
flock -w 120 9 || die "another auth-up.sh holds $RUN_DIR"

if [[ -f "$PID_FILE" ]] && alive "$(cat "$PID_FILE")"; then
	healthy || die "an auth server (pid $(cat "$PID_FILE")) runs from $RUN_DIR but does not answer on $URL"
	echo "auth server already running at $URL (pid $(cat "$PID_FILE")); reusing it"
	exit 0
fi
rm -f "$PID_FILE"
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
	die "port $PORT is in use by another process; choose another, e.g. AUTH_PORT=8096 $0"
fi

# npm ci from the lock file: the same packages on every machine; reinstalled when the lock changes.
if [[ ! -f "$SERVER_DIR/node_modules/.package-lock.json" || "$SERVER_DIR/package-lock.json" -nt "$SERVER_DIR/node_modules/.package-lock.json" ]]; then
	(cd "$SERVER_DIR" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed in $SERVER_DIR"
fi

if [[ -z "${AUTH_ADMIN_TOKEN:-}" ]]; then
	if [[ ! -s "$RUN_DIR/admin-token" ]]; then
		(umask 077 && head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$RUN_DIR/admin-token")
	fi
	AUTH_ADMIN_TOKEN="$(cat "$RUN_DIR/admin-token")"
fi
export AUTH_PORT="$PORT" AUTH_ADMIN_TOKEN
export AUTH_FHIR_BASES="${AUTH_FHIR_BASES:-${FHIR_BASE_URL:-http://127.0.0.1:8080/fhir}}"

[[ -f "$LOG_FILE" ]] && mv -f "$LOG_FILE" "$LOG_FILE.prev"
# shellcheck disable=SC2016
setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' auth-server "$PID_FILE" \
	node "$SERVER_DIR/server.mjs" >"$LOG_FILE" 2>&1 </dev/null 9>&- &
for ((i = 0; i < 50; i++)); do [[ -s "$PID_FILE" ]] && break; sleep 0.1; done
pid="$(cat "$PID_FILE")"
for ((i = 0; i < 100; i++)); do
	if healthy; then
		echo "auth server ready at $URL (pid $pid)"
		exit 0
	fi
	if ! kill -0 "$pid" 2>/dev/null; then break; fi
	sleep 0.2
done
echo "auth-up: error: the auth server did not answer on $URL" >&2
tail -n 30 "$LOG_FILE" >&2 || true
kill -TERM "$pid" 2>/dev/null || true
rm -f "$PID_FILE"
exit 1
