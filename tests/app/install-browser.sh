#!/usr/bin/env bash
# Installs what the SMART app's browser tests need, idempotently: Debian's Chromium (Playwright drives it
# through executable_path; Playwright's own browser download cannot work here) and axe-core from npm
# (tests/app/package.json, pinned by its lock file). Run as root for apt-get; does nothing when all is there.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ ! -x /usr/bin/chromium ]]; then
	if [[ "$(id -u)" != 0 ]]; then
		echo "install-browser: /usr/bin/chromium is missing; run as root: apt-get install -y chromium" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
fi
if [[ ! -f "$HERE/node_modules/axe-core/axe.min.js" || "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ]]; then
	(cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
fi
