#!/usr/bin/env bash
# What the browser tests need beyond the Python dev extra, installed idempotently (fast when present):
# - headless Chromium from Debian's packages (/usr/bin/chromium); Playwright drives it through
#   executable_path, so no browser is ever downloaded (`playwright install` cannot work here);
# - axe-core from npm (package.json + package-lock.json beside this script, `npm ci`), injected
#   into pages by the accessibility test.
# Called by `make setup` and by the browser test fixture when something is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deploy/browser/install.sh: /usr/bin/chromium is missing; run this script as root to install it" >&2
    exit 1
  fi
  echo "installing chromium (Debian package)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi

if [ ! -f "$here/node_modules/axe-core/axe.min.js" ] || [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
  if ! command -v npm >/dev/null; then
    echo "deploy/browser/install.sh: npm is missing (needed for axe-core)" >&2
    exit 1
  fi
  (cd "$here" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
fi
