#!/usr/bin/env bash
# `make dev`: the whole system on this machine. Starts the local stack (unless it already
# runs), installs cargo-lambda, then runs the dev supervisor (tests/src/bin/dev.rs): resources,
# a development origin, `cargo lambda watch` on the production paths, an SQS poller standing in
# for Lambda's event source mapping, and a cleanup timer. Ctrl-C stops what it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HAUL_CACHE="${HAUL_CACHE:-$HOME/.cache/haul}"
TOOLS="$HAUL_CACHE/tools"
CARGO_LAMBDA_VERSION=1.9.2

started=0
cleanup() {
  if [ "$started" = 1 ]; then
    scripts/stack.sh down || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! scripts/stack.sh status >/dev/null 2>&1; then
  started=1
fi
eval "$(scripts/stack.sh up)"

if ! "$TOOLS/bin/cargo-lambda" lambda --version 2>/dev/null | grep -q "$CARGO_LAMBDA_VERSION"; then
  echo "dev: installing cargo-lambda $CARGO_LAMBDA_VERSION" >&2
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install --quiet --disable-pip-version-check "cargo-lambda==$CARGO_LAMBDA_VERSION"
fi
export PATH="$TOOLS/bin:$PATH"

# Build the functions first, so the watcher's first requests do not wait on a cold build.
cargo build --quiet -p haul-initiate -p haul-status -p haul-worker -p haul-cleanup
cargo run --quiet -p haul-tests --bin dev
