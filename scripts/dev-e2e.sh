#!/usr/bin/env bash
# End-to-end check of `make dev` over real HTTP: start it, initiate a download, poll until
# completed, follow the 302 to the presigned URL, compare the bytes with the origin's, and
# check Ctrl-C (SIGINT) stops what it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export HAUL_DEV_PORT="${HAUL_DEV_PORT:-9400}"
export HAUL_DEV_ORIGIN_PORT="${HAUL_DEV_ORIGIN_PORT:-9401}"
export HAUL_DEV_PREFIX="haul-e2e-$$"
API="http://127.0.0.1:$HAUL_DEV_PORT"
ORIGIN="http://127.0.0.1:$HAUL_DEV_ORIGIN_PORT"
LOG=$(mktemp)
fail() { echo "dev-e2e: FAIL: $*" >&2; tail -40 "$LOG" >&2; exit 1; }

started_at=$(date +%s)
setsid make dev >"$LOG" 2>&1 &
DEV_PID=$!
stop_dev() { kill -INT -- "-$DEV_PID" 2>/dev/null || true; }
trap stop_dev EXIT

for _ in $(seq 1 2400); do
  grep -q "haul dev is ready" "$LOG" && break
  kill -0 "$DEV_PID" 2>/dev/null || fail "make dev exited early"
  sleep 0.5
done
grep -q "haul dev is ready" "$LOG" || fail "make dev not ready after 20 minutes"
echo "dev-e2e: make dev ready after $(($(date +%s) - started_at)) s"
curl -fsS "$API/health" | grep -q '"ok"' || fail "/health"

# File 1 of the dev catalog: 2 MiB over about 3 s.
accepted=$(curl -fsS -X POST "$API/v1/download/initiate" \
  -H 'content-type: application/json' -d '{"file_id": 1}')
job=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["jobId"])' <<<"$accepted")
echo "dev-e2e: job $job"
status=""
for _ in $(seq 1 240); do
  status=$(curl -fsS "$API/v1/download/status/$job" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  [ "$status" = completed ] && break
  case "$status" in queued|running) sleep 0.5 ;; *) fail "job ended $status" ;; esac
done
[ "$status" = completed ] || fail "job still $status"

code=$(curl -s -o /dev/null -w '%{http_code}' "$API/v1/download/$job")
[ "$code" = 302 ] || fail "download route answered $code"
got=$(curl -fsSL "$API/v1/download/$job" | sha256sum | cut -d' ' -f1)
want=$(curl -fsS "$ORIGIN/files/1" | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "bytes differ: $got vs $want"
echo "dev-e2e: downloaded bytes match the origin ($got)"

stop_dev
trap - EXIT
for _ in $(seq 1 60); do
  kill -0 "$DEV_PID" 2>/dev/null || break
  sleep 0.5
done
kill -0 "$DEV_PID" 2>/dev/null && fail "make dev still running after SIGINT"
if (exec 3<>"/dev/tcp/127.0.0.1/$HAUL_DEV_PORT") 2>/dev/null; then
  fail "port $HAUL_DEV_PORT still open after make dev stopped"
fi
# Function instances run in sessions of their own; they must not outlive make dev.
leftover=""
for _ in $(seq 1 20); do
  leftover=$(grep -l "HAUL_DEV_PREFIX=$HAUL_DEV_PREFIX" /proc/[0-9]*/environ 2>/dev/null || true)
  [ -z "$leftover" ] && break
  sleep 0.5
done
[ -z "$leftover" ] || fail "processes left running: $leftover"
echo "dev-e2e: ok"
rm -f "$LOG"
