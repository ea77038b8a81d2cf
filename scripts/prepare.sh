#!/usr/bin/env bash
# Installs everything `make test` needs, each piece pinned, cached under ~/.cache/haul (or
# HAUL_CACHE) and a no-op when already current: the developer tools (cargo-lambda, SAM, the
# permission proof's tables, actionlint), LocalStack and DynamoDB Local, Schemathesis, the
# webhook receiver's library, Debian's chromium and nginx-light, and the browser page's npm packages. Installs wait on the network and builds on
# the CPU, so scripts/test.sh runs this in the background while cargo compiles; the installs
# are independent of each other (own directories, own locks), so they run side by side too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

pids=()
scripts/tools.sh all >/dev/null &
pids+=($!)
scripts/stack.sh install &
pids+=($!)
scripts/schemathesis.sh --install-only &
pids+=($!)
scripts/webhooks/install.sh >/dev/null &
pids+=($!)
# apt holds one lock: Debian's chromium, nginx-light and unzip are installed one after the other.
{ scripts/web-e2e.sh --install-only && scripts/stream-e2e.sh --install-only && scripts/zip/install.sh && web/build.sh; } &
pids+=($!)

failed=0
for pid in "${pids[@]}"; do
  wait "$pid" || failed=1
done
exit "$failed"
