#!/usr/bin/env bash
# End-to-end check of `make dev` over real HTTP: start it, initiate a download, poll until
# completed, follow the 302 to the presigned URL, compare the bytes with the origin's, deliver
# and verify webhooks for 20 jobs (and measure their delay after completion), and
# check Ctrl-C (SIGINT) stops what it started. Under scripts/test.sh it uses the make dev that
# runs for all end-to-end stages (HAUL_E2E_DEV_SHARED=1, scripts/lib/dev-stack.sh), and the
# Ctrl-C check runs when test.sh stops that one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/dev-stack.sh

fail() {
  echo "dev-e2e: FAIL: $*" >&2
  if [ -n "$DEV_LOG" ]; then tail -40 "$DEV_LOG" >&2; fi
  exit 1
}

trap dev_stack_stop EXIT
# The key make dev signs webhooks with, so the receiver below can verify (a shared make dev
# was started with the one scripts/test.sh exported).
if [ -z "${HAUL_DEV_WEBHOOK_SECRET:-}" ]; then
  HAUL_DEV_WEBHOOK_SECRET="whsec_$(head -c 32 /dev/urandom | base64 -w0)"
  export HAUL_DEV_WEBHOOK_SECRET
fi
dev_stack_up dev-e2e e2e "${HAUL_DEV_PORT:-9400}" "${HAUL_DEV_ORIGIN_PORT:-9401}"
API=$DEV_API
ORIGIN=$DEV_ORIGIN
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

# Webhooks: 20 jobs with a callback to a receiver on 127.0.0.1, each job.completed verified
# with the Standard Webhooks library, and the delay from completion to delivery measured.
python_whl=$(scripts/webhooks/install.sh)
"$python_whl" scripts/webhooks/dev_latency.py --api "$API" --secret "$HAUL_DEV_WEBHOOK_SECRET" \
  --jobs "${HAUL_E2E_WEBHOOK_JOBS:-20}" --report target/e2e/webhook-latency.json \
  || fail "webhooks through make dev (above)"
echo "dev-e2e: webhooks delivered and verified (target/e2e/webhook-latency.json)"

# Ctrl-C stops make dev, its port and every process it started (when this script started it).
dev_stack_down
trap - EXIT
echo "dev-e2e: ok"
[ "${HAUL_E2E_DEV_SHARED:-}" = 1 ] || rm -f "$DEV_LOG"
