#!/usr/bin/env bash
# Install the Control Room's front-end libraries from npm (pinned in package.json / package-lock.json)
# and copy the files the pages load into src/lakehouse/web/static/vendor/ (git-ignored, never committed).
set -euo pipefail
cd "$(dirname "$0")/.."
VENDOR=src/lakehouse/web/static/vendor
STAMP=$VENDOR/.stamp
if [[ -f $STAMP && $STAMP -nt package-lock.json && $STAMP -nt package.json
      && $STAMP -nt src/lakehouse/web/static/src/sql-editor.mjs ]]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "web-assets: npm is missing; install Node.js and npm" >&2
    exit 1
  fi
fi
npm ci --no-audit --no-fund --loglevel=error
rm -rf "$VENDOR"
mkdir -p "$VENDOR"
cp node_modules/htmx.org/dist/htmx.min.js "$VENDOR/htmx.min.js"
cp node_modules/uplot/dist/uPlot.iife.min.js "$VENDOR/uPlot.iife.min.js"
cp node_modules/uplot/dist/uPlot.min.css "$VENDOR/uPlot.min.css"
cp node_modules/cytoscape/dist/cytoscape.min.js "$VENDOR/cytoscape.min.js"
cp node_modules/@picocss/pico/css/pico.min.css "$VENDOR/pico.min.css"
# CodeMirror 6 is ES modules across many packages: bundle our small entry into one script
node_modules/.bin/esbuild src/lakehouse/web/static/src/sql-editor.mjs --bundle --minify --format=iife \
  --log-level=warning --outfile="$VENDOR/sql-editor.js"
touch "$STAMP"
echo "web-assets: vendor files in $VENDOR"
