#!/usr/bin/env bash
# Debian's chromium for the Playwright browser tests (never `playwright install`: no browser downloads).
set -euo pipefail
if [[ -x /usr/bin/chromium ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "browser-deps: /usr/bin/chromium is missing; run as root: apt-get install -y chromium" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
echo "browser-deps: $(/usr/bin/chromium --version)"
