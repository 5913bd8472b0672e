#!/usr/bin/env bash
# Starts HAProxy (Debian's package, installed here when missing) in front of the CDS Hooks replicas, from
# deploy/lb/haproxy.cfg.template, and waits until it listens.
#
#   LB_PORT             frontend port on LB_BIND (default 8190)
#   LB_BIND             frontend address (default 127.0.0.1)
#   LB_BACKENDS         replicas, comma-separated host:port (default 127.0.0.1:8191,127.0.0.1:8192)
#   LB_TIMEOUT_SERVER   longest wait for a replica's answer (default 30s; HAProxy time syntax)
#   LB_RUN_DIR          config, pid and log directory (default var/lb)
#
# The replicas need not be up yet: HAProxy checks GET /ready on each every second and sends calls only to
# those that answer 200. Prints "load balancer ready at http://BIND:PORT (pid N; backends ...)" and exits 0,
# or exits non-zero with the reason (and the tail of the HAProxy log when HAProxy itself failed).
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$DEPLOY_DIR")"
TEMPLATE="$DEPLOY_DIR/lb/haproxy.cfg.template"
PORT="${LB_PORT:-8190}"
BIND="${LB_BIND:-127.0.0.1}"
BACKENDS="${LB_BACKENDS:-127.0.0.1:8191,127.0.0.1:8192}"
TIMEOUT_SERVER="${LB_TIMEOUT_SERVER:-30s}"
RUN_DIR="${LB_RUN_DIR:-$REPO_DIR/var/lb}"
[[ "$RUN_DIR" != *"|"* && "$RUN_DIR" != *" "* ]] || { echo "lb-up: error: LB_RUN_DIR must not hold '|' or spaces" >&2; exit 1; }
CONFIG="$RUN_DIR/haproxy.cfg"
PID_FILE="$RUN_DIR/haproxy.pid"
LOG_FILE="$RUN_DIR/haproxy.log"

die() { echo "lb-up: error: $*" >&2; exit 1; }

[[ "$PORT" =~ ^[0-9]+$ && "$PORT" -ge 1 && "$PORT" -le 65535 ]] || die "LB_PORT must be a port number, got '$PORT'"
[[ "$TIMEOUT_SERVER" =~ ^[0-9]+(ms|s|m)?$ ]] || die "LB_TIMEOUT_SERVER must be a HAProxy time (30s, 5000ms), got '$TIMEOUT_SERVER'"

servers=""
app_servers=""
n=0
IFS=',' read -r -a backend_list <<<"$BACKENDS"
for backend in "${backend_list[@]}"; do
	[[ "$backend" =~ ^[A-Za-z0-9.:-]+:[0-9]+$ ]] || die "LB_BACKENDS: '$backend' is not host:port"
	n=$((n + 1))
	servers+="    server replica$n $backend"$'\n'
	app_servers+="    server replica$n $backend cookie replica$n"$'\n'
done
((n > 0)) || die "LB_BACKENDS names no replica"

if ! command -v haproxy >/dev/null 2>&1; then
	echo "lb-up: installing haproxy (Debian package)" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y haproxy >&2 || { apt-get update >&2 && apt-get install -y haproxy >&2; } ||
		die "could not install haproxy (apt-get install -y haproxy)"
fi

alive() { # $1 = pid: alive and an haproxy
	[[ -n "$1" ]] && kill -0 "$1" 2>/dev/null && [[ "$(cat "/proc/$1/comm" 2>/dev/null)" == haproxy ]]
}
listening() { (exec 3<>"/dev/tcp/$BIND/$PORT") 2>/dev/null; }

mkdir -p "$RUN_DIR"
exec 9>"$RUN_DIR/lb-up.lock"
flock -w 60 9 || die "another lb-up.sh holds $RUN_DIR"

if [[ -f "$PID_FILE" ]] && alive "$(cat "$PID_FILE")"; then
	die "HAProxy (pid $(cat "$PID_FILE")) already runs from $RUN_DIR; stop it with deploy/lb-down.sh first"
fi
rm -f "$PID_FILE"
if listening; then
	die "port $PORT on $BIND is already in use by another process; choose another, e.g. LB_PORT=8290 $0"
fi

printf '%s' "$servers" >"$RUN_DIR/servers.part"
printf '%s' "$app_servers" >"$RUN_DIR/app-servers.part"
sed -e "s|@RUN_DIR@|$RUN_DIR|" -e "s|@BIND@|$BIND|" -e "s|@FRONTEND_PORT@|$PORT|" -e "s|@TIMEOUT_SERVER@|$TIMEOUT_SERVER|" \
	-e "/@SERVERS@/{r $RUN_DIR/servers.part" -e "d}" -e "/@APP_SERVERS@/{r $RUN_DIR/app-servers.part" -e "d}" \
	"$TEMPLATE" >"$CONFIG.tmp"
rm -f "$RUN_DIR/servers.part" "$RUN_DIR/app-servers.part"
haproxy -c -q -f "$CONFIG.tmp" || die "the generated configuration $CONFIG.tmp does not pass haproxy -c"
mv -f "$CONFIG.tmp" "$CONFIG"

[[ -f "$LOG_FILE" ]] && mv -f "$LOG_FILE" "$LOG_FILE.prev"
# -db: stay in the foreground (its log goes to stderr, i.e. LOG_FILE); setsid: outlive this shell.
# shellcheck disable=SC2016
setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' haproxy "$PID_FILE" \
	haproxy -db -f "$CONFIG" >"$LOG_FILE" 2>&1 </dev/null 9>&- &
for ((i = 0; i < 50; i++)); do [[ -s "$PID_FILE" ]] && break; sleep 0.1; done
pid="$(cat "$PID_FILE" 2>/dev/null || true)"
for ((i = 0; i < 100; i++)); do
	if ! alive "$pid"; then
		rm -f "$PID_FILE"
		echo "lb-up: error: HAProxy exited during startup; last lines of $LOG_FILE:" >&2
		tail -n 20 "$LOG_FILE" >&2 || true
		exit 1
	fi
	listening && break
	sleep 0.1
done
listening || die "HAProxy (pid $pid) does not listen on $BIND:$PORT after 10 s; see $LOG_FILE"
echo "load balancer ready at http://$BIND:$PORT (pid $pid; backends $BACKENDS)"
