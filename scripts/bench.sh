#!/usr/bin/env bash
# `make bench`, in one run against the local stack (not part of `make test`: it builds in
# release mode and moves about 4.8 GiB):
#   - the worker's throughput against awscli's transfer engine, and its peak memory at two
#     file sizes: target/bench/worker.json (`xtask bench`, xtask/src/bench.rs);
#   - the API: handler latency against the bare SDK calls, cold start and zipped size of the
#     four release function binaries, AWS requests and capacity units per job, and a load run:
#     target/bench/api.json (`xtask bench-api`, xtask/src/bench_api/).
# BENCH_ONLY=api or BENCH_ONLY=worker runs one of the two.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HAUL_CACHE="${HAUL_CACHE:-$HOME/.cache/haul}"
BENCH_VENV="$HAUL_CACHE/bench"
AWSCLI="awscli==1.46.3"

started=0
cleanup() { if [ "$started" = 1 ]; then scripts/stack.sh down || true; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "${BENCH_ONLY:-}" != api ] &&
  { [ ! -x "$BENCH_VENV/bin/aws" ] || ! grep -qx "$AWSCLI" "$BENCH_VENV/.spec" 2>/dev/null; }; then
  echo "bench: installing $AWSCLI (the reference transfer engine)" >&2
  python3 -m venv "$BENCH_VENV"
  "$BENCH_VENV/bin/pip" install --quiet --disable-pip-version-check "$AWSCLI"
  echo "$AWSCLI" >"$BENCH_VENV/.spec"
fi
scripts/stack.sh status >/dev/null 2>&1 || started=1
eval "$(scripts/stack.sh up)"

# The functions on their own, as `cargo lambda build --release` builds them, so cargo
# resolves their dependencies' features without the bench's (a second set of artifacts).
cargo build --release --quiet -p haul-initiate -p haul-status -p haul-worker -p haul-cleanup
# worker-once (the worker measured) and the benches in one build, one feature set.
cargo build --release --quiet -p haul-tests -p xtask --bin worker-once --bin xtask
target_dir="${CARGO_TARGET_DIR:-target}"
only="${BENCH_ONLY:-}"
if [ "$only" != api ]; then
  "$target_dir/release/xtask" bench "$target_dir/release/worker-once" "$BENCH_VENV/bin/aws"
fi
if [ "$only" != worker ]; then
  "$target_dir/release/xtask" bench-api "$target_dir/release"
fi
