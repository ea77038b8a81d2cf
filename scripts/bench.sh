#!/usr/bin/env bash
# `make bench`: the worker's throughput against awscli's transfer engine, and its peak memory
# at two file sizes, in one run against the local stack. Writes target/bench/worker.json.
# Not part of `make test` (it builds in release mode and moves about 4.5 GiB).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HAUL_CACHE="${HAUL_CACHE:-$HOME/.cache/haul}"
BENCH_VENV="$HAUL_CACHE/bench"
AWSCLI="awscli==1.46.3"

started=0
cleanup() { [ "$started" = 1 ] && scripts/stack.sh down || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -x "$BENCH_VENV/bin/aws" ] || ! grep -qx "$AWSCLI" "$BENCH_VENV/.spec" 2>/dev/null; then
  echo "bench: installing $AWSCLI (the reference transfer engine)" >&2
  python3 -m venv "$BENCH_VENV"
  "$BENCH_VENV/bin/pip" install --quiet --disable-pip-version-check "$AWSCLI"
  echo "$AWSCLI" >"$BENCH_VENV/.spec"
fi
scripts/stack.sh status >/dev/null 2>&1 || started=1
eval "$(scripts/stack.sh up)"

cargo build --release --quiet -p haul-tests --bin worker-once --bin bench
target_dir="${CARGO_TARGET_DIR:-target}"
"$target_dir/release/bench" "$target_dir/release/worker-once" "$BENCH_VENV/bin/aws"
