#!/usr/bin/env bash
# End-to-end check of the `haul` command-line client (clients/cli): builds the CLI, starts its
# own `make dev` (or, under scripts/test.sh, uses the one all end-to-end stages share:
# scripts/lib/dev-stack.sh) and runs the real binary against it over HTTP: a download whose
# bytes must equal the origin's, --json output, a failed job, status and cancel of a slow job,
# picking up a job after an interrupted run, bad and unknown job ids, an unreachable API, and
# the exit code of each.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/dev-stack.sh

WORK=$(mktemp -d)
DEV_LOG="$WORK/dev.log"
HAUL="${CARGO_TARGET_DIR:-target}/debug/haul"
BACKGROUND=()

fail() {
  echo "cli-e2e: FAIL: $*" >&2
  for f in "$WORK"/*.out "$WORK"/*.err; do
    [ -s "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }
  done
  echo "--- make dev" >&2
  tail -30 "$DEV_LOG" >&2
  exit 1
}

# run NAME WANT_EXIT ARGS...: runs the CLI, stdout and stderr to $WORK/NAME.{out,err}.
run() {
  local name=$1 want=$2
  shift 2
  local got=0
  "$HAUL" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || got=$?
  [ "$got" = "$want" ] || fail "$name: haul $* exited $got, expected $want"
}
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$WORK/$1.out"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
origin_sha() { curl -fsS "$ORIGIN/files/$1" | sha256sum | cut -d' ' -f1; }
# waited PID: waits for a background CLI (in this shell, not a subshell); exit code in $WAITED.
waited() {
  WAITED=0
  wait "$1" || WAITED=$?
}

echo "cli-e2e: building the CLI"
# `--bin`, not `-p haul-cli`: features resolved over the whole workspace, as `cargo test
# --workspace` and make dev resolve them, so the dependencies they built are reused.
cargo build --quiet --bin haul

stop_all() {
  for pid in "${BACKGROUND[@]}"; do kill "$pid" 2>/dev/null || true; done
  dev_stack_stop
}
trap stop_all EXIT
dev_stack_up cli-e2e cli-e2e "${HAUL_CLI_E2E_PORT:-9420}" "${HAUL_CLI_E2E_ORIGIN_PORT:-9421}"
API=$DEV_API
ORIGIN=$DEV_ORIGIN
# The CLI's own settings: this API, a state directory of its own, no token, few retries.
export HAUL_API_URL="$API"
export HAUL_STATE_DIR="$WORK/state"
unset HAUL_TOKEN
t0=$(date +%s)

# The slower downloads run in the background while the quick checks go on: an 8 MiB file (a
# one-part multipart upload, so its checksum is composite), a 2 MiB one with --json, two that
# fail, and a 64 MiB one (about 2 minutes) to look at and cancel.
mkdir -p "$WORK/files"
bg() { # NAME ARGS...: the CLI in the background, its pid in $! and in BACKGROUND
  local name=$1
  shift
  "$HAUL" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  BACKGROUND+=("$!")
}
bg slow get 3 -o "$WORK/files/three.bin"
SLOW=$!
bg four get 4 -o "$WORK/files/four.bin" --json
FOUR=$!
bg get5json get 5 -o "$WORK/files/five.bin" --json
GET5=$!
bg failed get 900001 -o "$WORK/files/"
FAILED=$!
bg failedjson get 900002 -o "$WORK/files/" --json
FAILEDJSON=$!

# 1. The slow job: status while it runs, cancel (twice), then `get --job` exits 5.
for _ in $(seq 1 600); do grep -q "^haul: job " "$WORK/slow.err" && break; sleep 0.1; done
slow_job=$(sed -n 's/^haul: job \([0-9a-f-]*\) for file 3$/\1/p' "$WORK/slow.err")
[ -n "$slow_job" ] || fail "get 3 did not name its job"
run status 0 status "$slow_job"
grep -Eq "status +(queued|running)" "$WORK/status.out" || fail "status: $(cat "$WORK/status.out")"
run statusjson 0 status "$slow_job" --json
[ "$(json statusjson 'd["jobId"]')" = "$slow_job" ] || fail "status --json"
run cancel 0 cancel "$slow_job"
grep -q "cancelled job $slow_job" "$WORK/cancel.out" || fail "cancel: $(cat "$WORK/cancel.out")"
run cancelagain 0 cancel "$slow_job"
grep -q "already cancelled" "$WORK/cancelagain.out" || fail "second cancel"
run afterget 5 get --job "$slow_job" --json
[ "$(json afterget 'd["error"]["code"], d["error"]["exitCode"]')" = "job_cancelled 5" ] \
  || fail "get --job after cancel: $(cat "$WORK/afterget.out")"
echo "cli-e2e: status and cancel work; get --job of the cancelled job exits 5"

# 2. A download: bytes equal to the origin's, the server's file name, no bars off a terminal.
run get1 0 get 1 -o "$WORK/files/"
saved="$WORK/files/file-1.bin"
[ -f "$saved" ] || fail "get 1 did not save $saved: $(cat "$WORK/get1.out")"
[ "$(sha "$saved")" = "$(origin_sha 1)" ] || fail "file 1 differs from the origin"
grep -q "CRC32C" "$WORK/get1.out" || fail "get 1 did not report its checksum"
if grep -q $'\e\[\|\r' "$WORK/get1.err"; then fail "progress bars drawn on a non-terminal"; fi
compgen -G "$HAUL_STATE_DIR/get-1-*.json" >/dev/null && fail "state left after a finished get"
echo "cli-e2e: get 1 saved the origin's bytes ($(sha "$saved" | cut -c1-16)…)"

# 3. Bad and unknown job ids, an unreachable API, and history (off without an authorizer).
run badid 2 status not-a-job-id
grep -q "invalid_job_id" "$WORK/badid.err" || fail "bad id: $(cat "$WORK/badid.err")"
run unknown 4 status 0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10
grep -q "job_not_found" "$WORK/unknown.err" || fail "unknown id: $(cat "$WORK/unknown.err")"
run unknownget 4 get --job 0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10
run usage 2 get
run unreachable 6 --api-url http://127.0.0.1:1 --retries 1 status 0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10
grep -q "cannot connect" "$WORK/unreachable.err" || fail "unreachable: $(cat "$WORK/unreachable.err")"
grep -q "retry 1/1" "$WORK/unreachable.err" || fail "no retry before giving up"
run unreachablejson 6 --api-url http://127.0.0.1:1 --retries 0 get 1 --json
[ "$(json unreachablejson 'd["error"]["class"]')" = network ] || fail "unreachable --json"
run list 4 list
grep -q "history is off" "$WORK/list.err" || fail "list: $(cat "$WORK/list.err")"
echo "cli-e2e: bad id exits 2, unknown job 4, unreachable API 6, list without history 4"

# 4. Interrupted, then the same command again: it continues the same job.
bg int get 9 -o "$WORK/files/nine.bin"
INT=$!
for _ in $(seq 1 600); do grep -q "^haul: job " "$WORK/int.err" && break; sleep 0.1; done
first_job=$(sed -n 's/^haul: job \([0-9a-f-]*\) for file 9$/\1/p' "$WORK/int.err")
[ -n "$first_job" ] || fail "get 9 did not name its job"
kill -INT "$INT"
waited "$INT"
[ "$WAITED" = 130 ] || fail "Ctrl-C exited $WAITED, expected 130"
grep -q "haul get --job $first_job" "$WORK/int.err" || fail "Ctrl-C did not say how to continue"
run again 0 get 9 -o "$WORK/files/nine.bin" --json
[ "$(json again 'd["jobId"], d["job"]')" = "$first_job continued" ] \
  || fail "the rerun did not continue job $first_job: $(cat "$WORK/again.out")"
[ "$(sha "$WORK/files/nine.bin")" = "$(origin_sha 9)" ] || fail "file 9 differs from the origin"
# A crash between sending the initiate and saving its answer: the state holds the key but no
# job id, and the rerun gets the job of that key replayed by the server.
replayed_job=$(curl -fsS -X POST "$API/v1/download/initiate" -H 'content-type: application/json' \
  -H "Idempotency-Key: cli-e2e-$$" -d '{"file_id": 17}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobId"])')
seed_state() { # FILE_ID KEY JOB_ID|None: the entry `haul get FILE_ID` looks for
  python3 - "$HAUL_STATE_DIR" "$API" "$@" <<'EOF'
import json, os, sys, time
state, api, file_id, key, job = sys.argv[1:6]
api = api.strip().rstrip("/")
h = 0xcbf29ce484222325
for b in api.encode() + b"\0" + file_id.encode():
    h = ((h ^ b) * 0x100000001b3) % 2**64
os.makedirs(state, exist_ok=True)
entry = {"apiUrl": api, "fileId": int(file_id), "idempotencyKey": key,
         "jobId": None if job == "None" else job, "createdAt": int(time.time())}
with open(os.path.join(state, f"get-{file_id}-{h:016x}.json"), "w") as f:
    json.dump(entry, f)
EOF
}
seed_state 17 "cli-e2e-$$" None
run replay 0 get 17 -o "$WORK/files/" --json
[ "$(json replay 'd["jobId"], d["job"]')" = "$replayed_job replayed" ] \
  || fail "the rerun did not replay job $replayed_job: $(cat "$WORK/replay.out")"
# --new-job ignores what an earlier run left.
seed_state 17 "cli-e2e-$$" "$replayed_job"
run newjob 0 get 17 -o "$WORK/files/" --json --new-job
[ "$(json newjob 'd["job"]')" = started ] || fail "--new-job: $(cat "$WORK/newjob.out")"
[ "$(json newjob 'd["jobId"]')" != "$replayed_job" ] || fail "--new-job reused the job"
echo "cli-e2e: Ctrl-C exits 130; the same command continues the job; a lost answer is replayed"

# 5. The background runs.
waited "$GET5"
[ "$WAITED" = 0 ] || fail "get 5 exited $WAITED"
[ "$(json get5json 'd["status"], d["fileId"], d["verified"]["size"], d["verified"]["checksum"]')" \
  = "completed 5 True whole" ] || fail "get 5 --json: $(cat "$WORK/get5json.out")"
[ "$(sha "$WORK/files/five.bin")" = "$(origin_sha 5)" ] || fail "file 5 differs from the origin"
echo "cli-e2e: --json output parses; size and whole-object CRC32C verified"
waited "$FAILED"
[ "$WAITED" = 3 ] || fail "get 900001 exited $WAITED, expected 3"
grep -q "origin_not_found" "$WORK/failed.err" || fail "the failure's code is not shown"
waited "$FAILEDJSON"
[ "$WAITED" = 3 ] || fail "get 900002 --json exited $WAITED, expected 3"
[ "$(json failedjson 'd["error"]["code"], d["error"]["exitCode"]')" = "origin_not_found 3" ] \
  || fail "failed --json: $(cat "$WORK/failedjson.out")"
echo "cli-e2e: a failed job exits 3 with origin_not_found"
waited "$FOUR"
[ "$WAITED" = 0 ] || fail "get 4 exited $WAITED"
[ "$(json four 'd["verified"]["checksum"]')" = composite ] || fail "get 4: $(cat "$WORK/four.out")"
[ "$(sha "$WORK/files/four.bin")" = "$(origin_sha 4)" ] || fail "file 4 differs from the origin"
echo "cli-e2e: the 8 MiB file verified by its composite CRC32C"
waited "$SLOW"
[ "$WAITED" = 5 ] || fail "the get waiting on the cancelled job exited $WAITED, expected 5"
grep -q "was cancelled" "$WORK/slow.err" || fail "the waiting get did not say why"
echo "cli-e2e: the get waiting on the cancelled job exited 5"
if compgen -G "$WORK/files/*.part" >/dev/null || compgen -G "$WORK/files/.*.part" >/dev/null; then
  fail "a partial file was left behind"
fi
echo "cli-e2e: checks took $(($(date +%s) - t0)) s"

for pid in "${BACKGROUND[@]}"; do kill "$pid" 2>/dev/null || true; done
dev_stack_down
trap - EXIT
echo "cli-e2e: ok"
rm -rf "$WORK"
