#!/usr/bin/env bash
# Priorities end to end (issue 17) over make dev's real HTTP: with the normal queue backlogged
# past its pollers, a high job starts within seconds, and a low one too (it never starves
# behind normal work); a normal job started with them stays queued behind the backlog. The
# checks are scripts/priority/e2e.py (report: target/e2e/priority.json); every job it starts is
# cancelled at the end. Under scripts/test.sh it uses the shared make dev.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/dev-stack.sh

fail() {
  echo "priority-e2e: FAIL: $*" >&2
  if [ -n "$DEV_LOG" ]; then tail -40 "$DEV_LOG" >&2; fi
  exit 1
}

trap dev_stack_stop EXIT
dev_stack_up priority-e2e priority-e2e "${HAUL_PRIORITY_E2E_API_PORT:-9450}" \
  "${HAUL_PRIORITY_E2E_ORIGIN_PORT:-9451}"
mkdir -p target/e2e
python3 scripts/priority/e2e.py --api "$DEV_API" --report target/e2e/priority.json \
  || fail "priorities through make dev (above)"
dev_stack_down
trap - EXIT
[ "${HAUL_E2E_DEV_SHARED:-}" = 1 ] || rm -f "$DEV_LOG"
echo "priority-e2e: ok"
