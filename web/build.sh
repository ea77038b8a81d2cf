#!/usr/bin/env bash
# Builds the browser page into web/dist when it is missing or older than its sources. Installs
# web/'s npm packages first when package.json or package-lock.json changed since the last
# install; npm's cache lives in ${HAUL_CACHE:-~/.cache/haul}/npm, so a machine that installed
# them once can do it again offline. `make dev` and scripts/web-e2e.sh call this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
HAUL_CACHE="${HAUL_CACHE:-$HOME/.cache/haul}"

if ! command -v npm >/dev/null 2>&1; then
  echo "web: npm is not installed (Node 20 with npm is needed to build the page)" >&2
  exit 1
fi
mkdir -p "$HAUL_CACHE"
exec 9>"$HAUL_CACHE/.web-build.lock"
flock 9

stamp=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)
if [ "$(cat node_modules/.haul-installed 2>/dev/null || true)" != "$stamp" ]; then
  echo "web: installing the page's npm packages" >&2
  npm ci --no-audit --no-fund --prefer-offline --cache "$HAUL_CACHE/npm" >&2
  echo "$stamp" >node_modules/.haul-installed
fi
if [ ! -f dist/.built ] \
  || [ -n "$(find src public package.json tsconfig.json build.mjs -newer dist/.built -print -quit)" ]; then
  echo "web: building the page into web/dist" >&2
  rm -rf dist
  npm run --silent build >&2
fi
