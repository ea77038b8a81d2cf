#!/usr/bin/env bash
# The browser page, end to end: builds web/ (and unit-tests its polling module), installs
# Debian's chromium when it is missing, starts its own `make dev` (API, origin and page on ports
# of their own; under scripts/test.sh it uses the one all end-to-end stages share:
# scripts/lib/dev-stack.sh), drives the page in headless Chromium through playwright-core
# (web/e2e/page.test.mjs, and batches in web/e2e/batch.test.mjs), and stops make dev again.
# Screenshots go to target/web-e2e/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/dev-stack.sh

# The functions must not restart under the test when a source file changes meanwhile.
export HAUL_DEV_NO_RELOAD=1
export HAUL_E2E_ARTIFACTS="$PWD/target/web-e2e"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
LOG=$(mktemp)
started_at=$(date +%s)
fail() {
  echo "web-e2e: FAIL: $*" >&2
  tail -40 "$LOG" >&2
  if [ -n "$DEV_LOG" ]; then tail -40 "$DEV_LOG" >&2; fi
  exit 1
}

if [ ! -x "$CHROMIUM" ]; then
  [ "$(id -u)" = 0 ] || fail "$CHROMIUM is missing; install Debian's chromium package (apt-get install chromium)"
  echo "web-e2e: installing chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
"$CHROMIUM" --version
# scripts/prepare.sh installs ahead of time, while make test compiles.
[ "${1:-}" = --install-only ] && exit 0

web/build.sh
(cd web && npm test --silent) >"$LOG" 2>&1 || fail "unit tests of web/src/poll.ts, web/src/events.ts and web/src/batch.ts"
echo "web-e2e: poll, events and batch module unit tests passed"

rm -rf "$HAUL_E2E_ARTIFACTS"
mkdir -p "$HAUL_E2E_ARTIFACTS"
: >"$LOG"
trap dev_stack_stop EXIT
dev_stack_up web-e2e web-e2e "${HAUL_WEB_E2E_API_PORT:-9410}" "${HAUL_WEB_E2E_ORIGIN_PORT:-9411}" \
  "${HAUL_WEB_E2E_PAGE_PORT:-9412}"
export HAUL_WEB_URL="http://127.0.0.1:${HAUL_DEV_WEB_PORT:?make dev serves no page}/"
export HAUL_ORIGIN_URL="$DEV_ORIGIN"
grep -q "page: $HAUL_WEB_URL" "$DEV_LOG" || fail "make dev does not announce the page at $HAUL_WEB_URL"
curl -fsS "$HAUL_WEB_URL" | grep -q 'src="app.js"' || fail "the page is not served at $HAUL_WEB_URL"
curl -fsS "${HAUL_WEB_URL}health" | grep -q '"ok"' || fail "/health is not proxied"

# cargo lambda watch starts (and may first build) each function on its first invocation: run one
# job through initiate, the worker and status before the browser's timeouts start counting.
warm_at=$(date +%s)
job=$(curl -fsS -X POST "${HAUL_WEB_URL}v1/download/initiate" -H 'content-type: application/json' \
  -d '{"file_id": 1}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobId"])') \
  || fail "warm-up initiate"
status=""
for _ in $(seq 1 1200); do
  status=$(curl -fsS "${HAUL_WEB_URL}v1/download/status/$job" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])') || status=""
  [ "$status" = completed ] && break
  sleep 0.5
done
[ "$status" = completed ] || fail "warm-up job still ${status:-unanswered}"
# The live stream's function too, in a few instances at once (cargo lambda watch runs one
# instance per open stream and starting one takes seconds, longer than the page waits for a
# stream before it polls): each of these gets the finished job's last event and ends.
warm_streams=()
for i in 1 2 3 4; do
  curl -fsSN -m 300 -H 'accept: text/event-stream' "${HAUL_WEB_URL}v1/download/$job/events" \
    >"$LOG.stream$i" 2>&1 &
  warm_streams+=($!)
done
for pid in "${warm_streams[@]}"; do wait "$pid" || fail "warm-up stream: $(cat "$LOG".stream*)"; done
grep -q '^event: status' "$LOG.stream1" || fail "warm-up stream sent no status event: $(cat "$LOG.stream1")"
rm -f "$LOG".stream*
echo "web-e2e: functions warm after $(($(date +%s) - warm_at)) s"

tests_at=$(date +%s)
(cd web && node --test --test-concurrency=1 --test-reporter=spec e2e/) || {
  echo "web-e2e: screenshots in target/web-e2e/" >&2
  fail "browser tests"
}
echo "web-e2e: browser tests took $(($(date +%s) - tests_at)) s; screenshots in target/web-e2e/"

dev_stack_down
trap - EXIT
echo "web-e2e: ok in $(($(date +%s) - started_at)) s"
rm -f "$LOG"
[ "${HAUL_E2E_DEV_SHARED:-}" = 1 ] || rm -f "$DEV_LOG"
