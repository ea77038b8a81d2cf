#!/usr/bin/env bash
# `make test`: installs what is missing, starts the local stack unless it already runs,
# checks formatting and lints, runs every unit and integration test, and stops the stack
# again if it started it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }
started=0
cleanup() {
  if [ "$started" = 1 ]; then
    step "stopping the local stack"
    scripts/stack.sh down || true
  fi
}
trap cleanup EXIT

step "toolchain"
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component"
  fi
done
cargo --version

step "local stack"
if scripts/stack.sh status >/dev/null 2>&1; then
  echo "already running; reusing it"
else
  started=1
fi
eval "$(scripts/stack.sh up)"

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "tests"
# The integration tests wait on I/O, not CPU: run more of them at once than there are cores.
cargo test --workspace -- --test-threads="${HAUL_TEST_THREADS:-8}"
