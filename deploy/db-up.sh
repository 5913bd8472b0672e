#!/usr/bin/env bash
# Starts a local PostgreSQL server (Debian's `postgresql` package) for the shared state store and waits until
# it accepts connections. Development and tests only: trust authentication on 127.0.0.1, no TLS.
#
#   DB_PORT     port on 127.0.0.1 (default 55432: clear of a system server on 5432)
#   DB_RUN_DIR  cluster, socket and log directory (default var/postgres-PORT; owned by the postgres user)
#   DB_NAME     database created on first start (default rls_screen)
#
# Installs the package with apt-get when no PostgreSQL server binaries are found (needs root). initdb and
# pg_ctl refuse to run as root, so as root they run as the `postgres` user the package creates.
# Prints "PostgreSQL ready: RLS_SCREEN_STATE_URL=postgresql://..." and exits 0, or exits non-zero with the reason.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${DB_PORT:-55432}"
RUN_DIR="${DB_RUN_DIR:-$ROOT/var/postgres-$PORT}"
NAME="${DB_NAME:-rls_screen}"
DATA="$RUN_DIR/data"
LOG="$RUN_DIR/server.log"

die() { echo "db-up: error: $*" >&2; exit 1; }
[[ "$PORT" =~ ^[0-9]+$ && "$PORT" -ge 1024 && "$PORT" -le 65535 ]] || die "DB_PORT must be a port number >= 1024, got '$PORT'"
[[ "$NAME" =~ ^[a-z_][a-z0-9_]*$ ]] || die "DB_NAME must be a plain lower-case identifier, got '$NAME'"

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
BIN="$(pg_bin)"
if [[ -z "$BIN" || ! -x "$BIN/initdb" ]]; then
	[[ "$(id -u)" == 0 ]] || die "PostgreSQL server binaries not found and not root: apt-get install postgresql"
	echo "db-up: installing PostgreSQL (Debian package postgresql) ..." >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q postgresql >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null; } \
		|| die "apt-get install postgresql failed"
	BIN="$(pg_bin)"
	[[ -x "$BIN/initdb" ]] || die "postgresql installed but no initdb under /usr/lib/postgresql/*/bin"
fi

as_owner() { # run a PostgreSQL tool as the cluster owner: postgres when we are root, ourselves otherwise
	if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
ready() { "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 2; }

mkdir -p "$RUN_DIR"
if [[ "$(id -u)" == 0 ]]; then
	chown postgres:postgres "$RUN_DIR"
	# the postgres user must reach RUN_DIR: every parent directory needs o+x (checked, never changed here)
	runuser -u postgres -- test -w "$RUN_DIR" || die "$RUN_DIR is not reachable by the postgres user (a parent directory lacks o+x)"
fi
if [[ ! -f "$DATA/PG_VERSION" ]]; then
	as_owner "$BIN/initdb" -D "$DATA" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >"$RUN_DIR/initdb.log" 2>&1 \
		|| { tail -n 20 "$RUN_DIR/initdb.log" >&2; die "initdb failed"; }
fi
if ready; then
	echo "db-up: a server already answers on 127.0.0.1:$PORT" >&2
else
	# fsync off: a throwaway development cluster (tests recreate what they need); never for real data
	as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
		-o "-p $PORT -k $RUN_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200" \
		start >/dev/null || { tail -n 30 "$LOG" >&2; die "pg_ctl start failed"; }
fi
for _ in $(seq 1 60); do ready && break; sleep 0.5; done
ready || die "server on 127.0.0.1:$PORT did not become ready"
if ! "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$NAME'" | grep -q 1; then
	"$BIN/psql" -q -h 127.0.0.1 -p "$PORT" -U postgres -c "CREATE DATABASE $NAME" || die "CREATE DATABASE $NAME failed"
fi
echo "PostgreSQL ready: RLS_SCREEN_STATE_URL=postgresql://postgres@127.0.0.1:$PORT/$NAME"
