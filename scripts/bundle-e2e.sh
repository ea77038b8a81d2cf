#!/usr/bin/env bash
# A zip batch whose archive takes at least three worker invocations, end to end under
# `WORKER_TIMEOUT_SECONDS=20 make dev` (issue 28): the worker hands the archive over to a
# continuation shortly before each 20 s invocation ends, the next one resumes its upload from
# the checkpoint, and the archive downloaded through the batch's route is checked by Python's
# zipfile (testzip, each member's SHA-256 against the origin's bytes) and `unzip -t`
# (scripts/zip/verify.py). Byte-identity with an archive written in one go is the integration
# test's (bundle_resume.rs): here the entries' time is the files' own completion.
#
# On a fast machine 40 MiB go up in a second, so make dev holds each UploadPart 7 s
# (HAUL_DEV_UPLOAD_PART_DELAY_MS) with one part of 5 MiB in flight: three parts per
# invocation, eight full parts and a short one (the last, with the central directory, goes
# up when the archive completes). Its own make dev (the shared one runs at full speed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
unset HAUL_E2E_DEV_SHARED HAUL_E2E_DEV_LOG
source scripts/lib/dev-stack.sh

fail() {
  echo "bundle-e2e: FAIL: $*" >&2
  if [ -n "$DEV_LOG" ]; then tail -40 "$DEV_LOG" >&2; fi
  exit 1
}
started=$(date +%s)

export WORKER_TIMEOUT_SECONDS="${WORKER_TIMEOUT_SECONDS:-20}"
export HAUL_DEV_UPLOAD_PART_DELAY_MS="${HAUL_DEV_UPLOAD_PART_DELAY_MS:-7000}"
export PARTS_IN_FLIGHT=1 PART_SIZE_MIB=5
trap dev_stack_stop EXIT
dev_stack_up bundle-e2e bundle-e2e "${HAUL_BUNDLE_E2E_API_PORT:-9470}" \
  "${HAUL_BUNDLE_E2E_ORIGIN_PORT:-9471}" "${HAUL_BUNDLE_E2E_WEB_PORT:-9472}"
API=$DEV_API
ORIGIN=$DEV_ORIGIN
grep -q "invocations last at most $WORKER_TIMEOUT_SECONDS s" "$DEV_LOG" ||
  fail "make dev did not take WORKER_TIMEOUT_SECONDS=$WORKER_TIMEOUT_SECONDS"

# Twenty files of the dev catalog's 2 MiB kind (ids 1, 5, 9, ...: about 3 s each).
ids=$(python3 -c 'print(",".join(str(1 + 4 * i) for i in range(20)))')
body="{\"file_ids\": [$ids], \"bundle\": \"zip\"}"
echo "bundle-e2e: curl -X POST $API/v1/download/initiate -d '$body'"
accepted=$(curl -fsS -X POST "$API/v1/download/initiate" -H 'content-type: application/json' \
  -d "$body")
batch=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["jobId"])' <<<"$accepted")
echo "bundle-e2e: batch $batch"

status="" bundling=0
for _ in $(seq 1 600); do
  view=$(curl -fsS "$API/v1/download/status/$batch")
  status=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' <<<"$view")
  [ "$status" = completed ] && break
  case "$status" in queued | running) ;; *) fail "batch ended $status: $view" ;; esac
  if python3 -c 'import json,sys; v=json.load(sys.stdin); sys.exit(v.get("phase") != "bundling")' \
    <<<"$view"; then
    [ "$bundling" = 1 ] || echo "bundle-e2e: bundling: $(python3 -c \
      'import json,sys; print(json.load(sys.stdin)["archiveProgress"])' <<<"$view")"
    bundling=1
  fi
  sleep 0.5
done
[ "$status" = completed ] || fail "batch still $status"
[ "$bundling" = 1 ] || fail "the view never showed phase bundling"

handovers=$(grep -c "handing the archive over to a continuation" "$DEV_LOG" || true)
resumes=$(grep -c "resuming the archive from its checkpoint" "$DEV_LOG" || true)
echo "bundle-e2e: $handovers hand-overs, $resumes resumed invocations:"
grep -E "handing the archive over|resuming the archive from its checkpoint|archive written" \
  "$DEV_LOG" | cut -c1-400
[ "$handovers" -ge 2 ] && [ "$resumes" -ge 2 ] ||
  fail "the archive took fewer than three invocations ($handovers hand-overs)"

dir=$(mktemp -d)
trap 'rm -rf "$dir"; dev_stack_stop' EXIT
code=$(curl -s -o /dev/null -w '%{http_code}' "$API/v1/download/$batch")
[ "$code" = 302 ] || fail "the batch's download route answered $code"
curl -fsSL -o "$dir/archive.zip" "$API/v1/download/$batch"
for id in ${ids//,/ }; do curl -fsS -o "$dir/file-$id.bin" "$ORIGIN/files/$id"; done
python3 - "$dir" "$ids" >"$dir/manifest.json" <<'EOF'
import hashlib, json, os, sys
d, ids = sys.argv[1], sys.argv[2].split(",")
entries = []
for i in ids:
    data = open(os.path.join(d, f"file-{i}.bin"), "rb").read()
    entries.append({"name": f"file-{i}.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
print(json.dumps({"zip64": False, "entries": entries}))
EOF
scripts/zip/install.sh >/dev/null
python3 scripts/zip/verify.py "$dir/archive.zip" "$dir/manifest.json" ||
  fail "the readers reject the archive (above)"

dev_stack_down
trap 'rm -rf "$dir"' EXIT
echo "bundle-e2e: ok in $(($(date +%s) - started)) s"
