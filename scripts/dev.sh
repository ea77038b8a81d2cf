#!/usr/bin/env bash
# `make dev`: the whole system on this machine. Starts the local stack (unless it already
# runs), installs cargo-lambda, then runs the dev supervisor (`xtask dev`, xtask/src/dev/): resources,
# a development origin, `cargo lambda watch` on the production paths, an SQS poller standing in
# for Lambda's event source mapping, and a cleanup timer. Ctrl-C stops what it started.
# HAUL_DEV_AUTH=1: with callers, a local OIDC issuer and the API behind a JWT authorizer like
# API Gateway's (xtask/src/dev/auth.rs; tokens from scripts/dev-token NAME).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=0
cleanup() {
  if [ "$started" = 1 ]; then
    scripts/stack.sh down || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "${HAUL_STACK:-}" = external ]; then
  : "${AWS_ENDPOINT_URL:?HAUL_STACK=external needs AWS_ENDPOINT_URL}"
else
  scripts/stack.sh status >/dev/null 2>&1 || started=1
  eval "$(scripts/stack.sh up)"
fi
eval "$(scripts/tools.sh dev)"
# The browser page (web/dist), built only when it is missing or older than its sources.
web/build.sh || echo "dev: the browser page could not be built; make dev goes on without it" >&2

# Build the functions first, so the watcher's first requests do not wait on a cold build, and
# the supervisor with them. `--bin` without `-p`, as `cargo lambda watch` builds each function
# (`cargo run --bin <name>`): cargo then resolves features for the whole workspace, the same set
# `cargo test --workspace` uses, so this build, the tests' and the watcher's share one
# dependency graph (docs/testing.md, "One build").
cargo build --quiet --bin initiate --bin status --bin worker --bin cleanup --bin notifier --bin stream --bin xtask
# Run the supervisor directly, not through `cargo run` (or `cargo xtask dev`): cargo's per-run
# variables (CARGO_PKG_*, LD_LIBRARY_PATH, ...) would reach cargo lambda's builds and make them
# rebuild the dependencies the build above just made.
"${CARGO_TARGET_DIR:-target}/debug/xtask" dev
