#!/bin/sh
# The image's entrypoint: checks what the chart mounts and sets, then runs rls-screen (exec: PID 1 is
# rls-screen itself, so SIGTERM from the kubelet reaches it).
#
#   serve [ARGS]   the CDS service on RLS_SCREEN_HOST:RLS_SCREEN_PORT (0.0.0.0:8090) with
#                  RLS_SCREEN_WORKERS uvicorn workers, X-Forwarded-* trusted from
#                  RLS_SCREEN_FORWARDED_ALLOW_IPS (the ingress in front of the pod); on SIGTERM
#                  /ready 503 for RLS_SCREEN_DRAIN_SECONDS (0), then up to RLS_SCREEN_GRACEFUL_TIMEOUT
#                  seconds (15) for the calls in flight
#   anything else  passed to rls-screen as it is (e.g. batch --condition)
#
# Every other setting is the module's own RLS_SCREEN_* environment (docs/deploy.md). RLS_SCREEN_BIN
# names the program (default: rls-screen on PATH; tests run this script against a checkout).
set -eu
die() { echo "entrypoint: $*" >&2; exit 3; }

bin="${RLS_SCREEN_BIN:-rls-screen}"
state="${RLS_SCREEN_STATE_DIR:-/var/lib/rls-screen}"
mkdir -p "$state" 2>/dev/null || die "cannot create the state directory $state (mount a writable volume there)"
[ -w "$state" ] || die "the state directory $state is not writable by uid $(id -u) (volume ownership? fsGroup?)"
for file in "${RLS_SCREEN_CDS_TRUSTED_ISSUERS_FILE:-}" "${RLS_SCREEN_SMART_PRIVATE_KEY_FILE:-}"; do
	[ -z "$file" ] || [ -r "$file" ] || die "$file is not readable (is the Secret mounted?)"
done
if [ -n "${RLS_SCREEN_CONCEPTMAP_DIR:-}" ] && [ ! -d "$RLS_SCREEN_CONCEPTMAP_DIR" ]; then
	die "RLS_SCREEN_CONCEPTMAP_DIR=$RLS_SCREEN_CONCEPTMAP_DIR is not a directory (is the ConfigMap mounted?)"
fi

[ "$#" -gt 0 ] || set -- serve
if [ "$1" = serve ]; then
	shift
	if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
		mkdir -p "$PROMETHEUS_MULTIPROC_DIR" || die "cannot create PROMETHEUS_MULTIPROC_DIR=$PROMETHEUS_MULTIPROC_DIR"
	fi
	exec "$bin" serve \
		--host "${RLS_SCREEN_HOST:-0.0.0.0}" \
		--port "${RLS_SCREEN_PORT:-8090}" \
		--workers "${RLS_SCREEN_WORKERS:-1}" \
		--proxy-headers --forwarded-allow-ips "${RLS_SCREEN_FORWARDED_ALLOW_IPS:-127.0.0.1}" \
		--drain-seconds "${RLS_SCREEN_DRAIN_SECONDS:-0}" \
		--graceful-timeout "${RLS_SCREEN_GRACEFUL_TIMEOUT:-15}" \
		"$@"
fi
exec "$bin" "$@"
