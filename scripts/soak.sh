#!/usr/bin/env bash
# `make soak`: 500 jobs through the real initiate handler, worker and cleanup against the local
# stack with about 10% of origin and AWS requests faulted (`xtask soak`, xtask/src/soak.rs). Every job
# must end terminal, none lost or duplicated. Writes target/soak/report.json.
# Not part of `make test` (a release build and a few minutes of load).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=0
cleanup() { if [ "$started" = 1 ]; then scripts/stack.sh down || true; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

scripts/stack.sh status >/dev/null 2>&1 || started=1
eval "$(scripts/stack.sh up)"

cargo build --release --quiet -p xtask
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir/soak"
# The worker's metric lines (stdout) go to a log; the summary is on stderr.
"$target_dir/release/xtask" soak "$target_dir/soak/report.json" >"$target_dir/soak/metrics.log"
