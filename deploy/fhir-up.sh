#!/usr/bin/env bash
# Starts the local HAPI FHIR R4 server (deploy/fhir-server) in the background and waits until it is healthy.
#
#   FHIR_PORT           port on 127.0.0.1 (default 8080)
#   FHIR_RUN_DIR        pid/log directory (default deploy/fhir-server/.run)
#   FHIR_START_TIMEOUT  seconds to wait for GET /fhir/metadata = 200 (default 300)
#   FHIR_JAVA_HOME      Java to use (default: a Java 17 found on this machine)
#   FHIR_JAVA_OPTS      JVM options (default: -Xmx2g -XX:+ExitOnOutOfMemoryError)
#
# Prints one line "FHIR server ready at http://127.0.0.1:PORT/fhir (pid N, Ns)" and exits 0, or exits non-zero
# with the reason (and the tail of the server log when the server itself failed).
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SERVER_DIR="$DEPLOY_DIR/fhir-server"
JAR="$SERVER_DIR/target/fhir-server.jar"
PORT="${FHIR_PORT:-8080}"
RUN_DIR="${FHIR_RUN_DIR:-$SERVER_DIR/.run}"
TIMEOUT="${FHIR_START_TIMEOUT:-300}"
JAVA_OPTS="${FHIR_JAVA_OPTS:--Xmx2g -XX:+ExitOnOutOfMemoryError}"
PID_FILE="$RUN_DIR/fhir-server.pid"
PORT_FILE="$RUN_DIR/fhir-server.port"
LOG_FILE="$RUN_DIR/fhir-server.log"
BASE_URL="http://127.0.0.1:$PORT/fhir"

die() { echo "fhir-up: error: $*" >&2; exit 1; }

[[ "$PORT" =~ ^[0-9]+$ && "$PORT" -ge 1 && "$PORT" -le 65535 ]] || die "FHIR_PORT must be a port number, got '$PORT'"
[[ "$TIMEOUT" =~ ^[0-9]+$ && "$TIMEOUT" -ge 1 ]] || die "FHIR_START_TIMEOUT must be a positive number of seconds, got '$TIMEOUT'"
command -v curl >/dev/null 2>&1 || die "curl is required (apt-get install curl)"

# --- helpers -----------------------------------------------------------------------------------------------
alive() { # $1 = pid: exists and is not a zombie
	[[ -n "$1" ]] && kill -0 "$1" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}
is_our_server() { # $1 = pid: alive and running our jar?
	alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q 'fhir-server\.jar'
}
healthy() { # GET /fhir/metadata answers 200
	[[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$BASE_URL/metadata" 2>/dev/null || true)" == 200 ]]
}
port_listener() { # prints a description of whatever listens on $PORT (nothing if free)
	if command -v ss >/dev/null 2>&1; then
		ss -Hltnp "sport = :$PORT" 2>/dev/null || true
	elif (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
		echo "something accepts connections on 127.0.0.1:$PORT"
	fi
}
log_tail() {
	echo "----- last 30 lines of $LOG_FILE -----" >&2
	tail -n 30 "$LOG_FILE" >&2 2>/dev/null || true
	echo "-----" >&2
}
stop_pid() { # TERM, wait up to 10 s, KILL
	local pid="$1" i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 20; i++)); do alive "$pid" || return 0; sleep 0.5; done
	kill -KILL "$pid" 2>/dev/null || true
}
wait_healthy() { # $1 = pid, $2 = start time (SECONDS); returns when healthy, dies otherwise
	local pid="$1" t0="$2"
	while true; do
		if ! alive "$pid"; then
			rm -f "$PID_FILE" "$PORT_FILE"
			echo "fhir-up: error: the FHIR server (pid $pid) exited during startup after $((SECONDS - t0))s" >&2
			log_tail
			exit 1
		fi
		if healthy; then return 0; fi
		if ((SECONDS - t0 >= TIMEOUT)); then
			echo "fhir-up: error: the FHIR server did not answer 200 on $BASE_URL/metadata within ${TIMEOUT}s (FHIR_START_TIMEOUT); stopping it" >&2
			stop_pid "$pid"
			rm -f "$PID_FILE" "$PORT_FILE"
			log_tail
			exit 1
		fi
		sleep 1
	done
}

mkdir -p "$RUN_DIR"

# One fhir-up.sh at a time per run dir: a second caller waits here, then finds the server and reuses it.
if command -v flock >/dev/null 2>&1; then
	exec 9>"$RUN_DIR/fhir-up.lock"
	if ! flock -n 9; then
		echo "fhir-up: another fhir-up.sh is starting the server from $RUN_DIR; waiting for it" >&2
		flock -w "$((TIMEOUT + 60))" 9 || die "gave up waiting for the other fhir-up.sh"
	fi
fi

# --- a server started earlier by this script? -------------------------------------------------------------
if [[ -f "$PID_FILE" ]]; then
	old_pid="$(cat "$PID_FILE" 2>/dev/null || true)"
	old_port="$(cat "$PORT_FILE" 2>/dev/null || true)"
	if is_our_server "$old_pid"; then
		if [[ "$old_port" != "$PORT" ]]; then
			die "a FHIR server started by fhir-up.sh is already running from $RUN_DIR on port ${old_port:-?} (pid $old_pid); stop it with deploy/fhir-down.sh or use another FHIR_RUN_DIR"
		fi
		t0=$SECONDS
		if ! healthy; then
			echo "fhir-up: a FHIR server (pid $old_pid) is already starting on port $PORT; waiting for it" >&2
			wait_healthy "$old_pid" "$t0"
		fi
		echo "FHIR server already running at $BASE_URL (pid $old_pid); reusing it"
		if [[ -f "$RUN_DIR/fhir-server.jar" && -n "$(find "$SERVER_DIR/pom.xml" "$SERVER_DIR/src" -newer "$RUN_DIR/fhir-server.jar" -print -quit 2>/dev/null)" ]]; then
			echo "fhir-up: note: deploy/fhir-server changed since this server was started; restart (fhir-down.sh, fhir-up.sh) to use the changes" >&2
		fi
		exit 0
	fi
	rm -f "$PID_FILE" "$PORT_FILE" # stale
fi

# --- checks before starting --------------------------------------------------------------------------------
listener="$(port_listener)"
if [[ -n "$listener" ]]; then
	echo "fhir-up: error: port $PORT is already in use by another process (not a server started by fhir-up.sh from $RUN_DIR):" >&2
	echo "$listener" >&2
	echo "fhir-up: stop that process or choose another port, e.g. FHIR_PORT=8081 $0" >&2
	exit 1
fi

# shellcheck source-path=SCRIPTDIR/fhir-server
source "$SERVER_DIR/java-env.sh"
fhir_find_java || exit 1

"$SERVER_DIR/build.sh" || die "could not build $JAR"

# --- start ------------------------------------------------------------------------------------------------
# Run a copy of the jar, so a later rebuild (which rewrites target/fhir-server.jar) cannot pull the
# classes out from under a running server. Only refreshed when no server runs from this run dir.
RUN_JAR="$RUN_DIR/fhir-server.jar"
if ! cmp -s "$JAR" "$RUN_JAR" 2>/dev/null; then
	cp -f "$JAR" "$RUN_JAR.tmp"
	mv -f "$RUN_JAR.tmp" "$RUN_JAR"
fi
[[ -f "$LOG_FILE" ]] && mv -f "$LOG_FILE" "$LOG_FILE.prev"
read -r -a java_opts <<<"$JAVA_OPTS"
t0=$SECONDS
# setsid: own session, so the server outlives this shell and a Ctrl-C in the caller's terminal.
# The inner shell writes its own pid and then exec's java, so the pid file holds the JVM's pid.
# shellcheck disable=SC2016
setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' fhir-server "$PID_FILE" \
	"$FHIR_JAVA" "${java_opts[@]}" -jar "$RUN_JAR" \
	--server.port="$PORT" --server.address=127.0.0.1 \
	>"$LOG_FILE" 2>&1 </dev/null 9>&- &
launcher=$!
for ((i = 0; i < 50; i++)); do [[ -s "$PID_FILE" ]] && break; sleep 0.1; done
pid="$(cat "$PID_FILE" 2>/dev/null || echo "$launcher")"
echo "$pid" >"$PID_FILE"
echo "$PORT" >"$PORT_FILE"

# Interrupted while waiting: do not leave a half-started server behind.
trap 'echo "fhir-up: interrupted; stopping the FHIR server (pid $pid)" >&2; stop_pid "$pid"; rm -f "$PID_FILE" "$PORT_FILE"; exit 130' INT TERM

wait_healthy "$pid" "$t0"
trap - INT TERM
echo "FHIR server ready at $BASE_URL (pid $pid, $((SECONDS - t0))s)"
