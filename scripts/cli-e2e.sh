#!/usr/bin/env bash
# End-to-end check of the `haul` command-line client (clients/cli): builds the CLI, starts its
# own `make dev` (or, under scripts/test.sh, uses the one all end-to-end stages share:
# scripts/lib/dev-stack.sh) and runs the real binary against it over HTTP: a download whose
# bytes must equal the origin's, --json output, a failed job and its retry, status and cancel of a slow job,
# picking up a job after an interrupted run, --priority, bad and unknown job ids, an unreachable API, and
# the exit code of each. Jobs are followed over their event stream (GET …/events) by default:
# checked, and --follow poll, and through two small proxies started here (python3's
# http.server) that break the stream: one answers 502 on …/events (the CLI falls back to
# polling; --follow stream fails), the other cuts the first stream after one event (the CLI
# reconnects with Last-Event-ID). Batches (issue 17): `get 1 5 9` as one job with three verified
# files, a batch with a missing file (exit 9), all missing (exit 3), `--zip` read back by
# Python's zipfile, and `--priority`.
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
DEV_PORT=${DEV_API##*:}
# The CLI's own settings: this API, a state directory of its own, no token, few retries.
export HAUL_API_URL="$API"
export HAUL_STATE_DIR="$WORK/state"
unset HAUL_TOKEN HAUL_FOLLOW
t0=$(date +%s)

# The proxies: PORT UPSTREAM_PORT MODE LOG. Every request is forwarded to the API (answers line
# by line, flushed, so streams stream), except: mode 502 answers …/events with a gateway error
# page; mode cut ends the first …/events answer after its first status event. LOG gets a line
# per …/events request ("events N last-event-id=ID|-") and per event id relayed ("relayed N ID").
cat >"$WORK/proxy.py" <<'PROXY'
import http.client, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, upstream, mode, log_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
lock = threading.Lock()
count = [0]
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "date", "server"}


def log(line):
    with lock, open(log_path, "a") as f:
        f.write(line + "\n")


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # the answer ends when the connection closes

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.forward()

    def do_POST(self):
        self.forward()

    def do_DELETE(self):
        self.forward()

    def forward(self):
        n = 0
        if self.path.split("?")[0].endswith("/events"):
            with lock:
                count[0] += 1
                n = count[0]
            log(f"events {n} last-event-id={self.headers.get('Last-Event-ID', '-')}")
            if mode == "502":
                page = b"<html><body>502 Bad Gateway</body></html>"
                self.send_response(502)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=120)
        conn.request(self.command, self.path, body=body, headers=headers)
        answer = conn.getresponse()
        self.send_response(answer.status)
        for k, v in answer.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        self.end_headers()
        cut = mode == "cut" and n == 1
        status_seen = False
        while True:
            line = answer.readline()
            if not line:
                break
            self.wfile.write(line)
            self.wfile.flush()
            if n and line.startswith(b"id:"):
                log(f"relayed {n} {line[3:].strip().decode()}")
            status_seen = status_seen or line.startswith(b"event: status")
            if cut and status_seen and line.strip() == b"":
                break
        conn.close()


server = ThreadingHTTPServer(("127.0.0.1", port), Proxy)
server.daemon_threads = True
server.serve_forever()
PROXY
# proxy PORT MODE LOG: starts one and waits until it listens.
proxy() {
  : >"$3"
  python3 "$WORK/proxy.py" "$1" "$DEV_PORT" "$2" "$3" 2>"$WORK/proxy-$2.err" &
  BACKGROUND+=("$!")
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  fail "the $2 proxy does not listen on $1"
}
BAD_PORT=${HAUL_CLI_E2E_PROXY_PORT:-9422}
CUT_PORT=$((BAD_PORT + 1))
proxy "$BAD_PORT" 502 "$WORK/bad.log"
proxy "$CUT_PORT" cut "$WORK/cut.log"
BAD="http://127.0.0.1:$BAD_PORT"
CUT="http://127.0.0.1:$CUT_PORT"
# events_requests LOG: how many …/events requests a proxy saw.
events_requests() { grep -c '^events ' "$1" || true; }

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
# Through the proxy that cuts the first stream: the CLI reconnects with Last-Event-ID.
bg reconnect --api-url "$CUT" get 4 -o "$WORK/files/four-again.bin" --json
RECONNECT=$!

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
grep -q "following its event stream" "$WORK/get1.err" || fail "get 1 did not follow the stream"
if grep -q "polling" "$WORK/get1.err"; then fail "get 1 fell back to polling"; fi
run get1json 0 get 1 -o "$WORK/files/one-json.bin" --json
[ "$(json get1json 'd["follow"]')" = stream ] || fail "get 1 --json: $(cat "$WORK/get1json.out")"
[ "$(sha "$WORK/files/one-json.bin")" = "$(origin_sha 1)" ] || fail "file 1 (stream) differs"
echo "cli-e2e: get 1 followed the job over its event stream"

# 2b. --follow poll (and HAUL_FOLLOW=poll) never opens the stream: checked through the 502
# proxy, which counts the …/events requests (none so far).
run pollflag 0 --api-url "$BAD" get 1 -o "$WORK/files/one-poll.bin" --json --follow poll
[ "$(json pollflag 'd["follow"]')" = poll ] || fail "--follow poll: $(cat "$WORK/pollflag.out")"
[ "$(sha "$WORK/files/one-poll.bin")" = "$(origin_sha 1)" ] || fail "file 1 (poll) differs"
export HAUL_FOLLOW=poll
run pollenv 0 --api-url "$BAD" get 2 -o "$WORK/files/two-poll.bin" --json
unset HAUL_FOLLOW
[ "$(json pollenv 'd["follow"]')" = poll ] || fail "HAUL_FOLLOW=poll: $(cat "$WORK/pollenv.out")"
[ "$(events_requests "$WORK/bad.log")" = 0 ] || fail "--follow poll opened the stream"
if grep -q "event stream" "$WORK/pollflag.err" "$WORK/pollenv.err"; then
  fail "--follow poll talked about the stream"
fi
echo "cli-e2e: --follow poll and HAUL_FOLLOW=poll poll, and never open the stream"

# 2c. A proxy that answers 502 on …/events: auto falls back to polling (and says so, once),
# the job still completes and verifies; --follow stream fails instead (exit 6).
run fallback 0 --api-url "$BAD" get 1 -o "$WORK/files/one-fallback.bin" --json
[ "$(json fallback 'd["follow"], d["verified"]["size"]')" = "poll True" ] \
  || fail "fallback: $(cat "$WORK/fallback.out")"
[ "$(sha "$WORK/files/one-fallback.bin")" = "$(origin_sha 1)" ] || fail "file 1 (fallback) differs"
[ "$(grep -c "no usable event stream" "$WORK/fallback.err")" = 1 ] \
  || fail "the fallback was not announced once: $(cat "$WORK/fallback.err")"
grep -q "HTTP 502" "$WORK/fallback.err" || fail "the fallback did not say why"
[ "$(events_requests "$WORK/bad.log")" = 1 ] || fail "auto mode retried a broken stream"
run strict 6 --api-url "$BAD" --retries 1 get 2 -o "$WORK/files/" --json --follow stream
[ "$(json strict 'd["error"]["code"]')" = stream_unavailable ] \
  || fail "--follow stream: $(cat "$WORK/strict.out")"
[ "$(events_requests "$WORK/bad.log")" = 3 ] || fail "--follow stream did not retry once"
echo "cli-e2e: a 502 on the stream falls back to polling; --follow stream exits 6"

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

# 4b. Batches (issue 17): `get 1 5 9` is one job of three files, each saved under its name and
# verified; a batch with a missing file (ids from 900000 up do not exist) saves the others,
# names the failed one and exits 9; every file missing exits 3; `--zip` saves one archive that
# Python's zipfile reads back, its members equal to the origin's bytes.
run batch 0 get 1 5 9 -o "$WORK/batch/" --json
[ "$(json batch 'd["status"], d["filesTotal"], d["filesSaved"], d["filesFailed"], d["bundle"]')" \
  = "completed 3 3 0 None" ] || fail "get 1 5 9: $(cat "$WORK/batch.out")"
[ "$(json batch '" ".join(str(f["fileId"]) for f in d["files"] if f["status"] == "saved" and f["verified"]["size"] and f["verified"]["checksum"] != "none")')" \
  = "1 5 9" ] || fail "get 1 5 9: not every file verified: $(cat "$WORK/batch.out")"
for id in 1 5 9; do
  [ "$(sha "$WORK/batch/file-$id.bin")" = "$(origin_sha "$id")" ] || fail "batch: file $id differs from the origin"
done
batch_job=$(json batch 'd["jobId"]')
run batchstatus 0 status "$batch_job" --json
[ "$(json batchstatus 'd["fileId"], d["totalFileIds"], d["completedFiles"], len(d["files"])')" \
  = "None 3 3 3" ] || fail "get 1 5 9 did not start one batch: $(cat "$WORK/batchstatus.out")"
compgen -G "$HAUL_STATE_DIR/batch-*.json" >/dev/null && fail "state left after a finished batch"
# Plain output: a line per file's state, then one per saved file and the total.
run batchplain 0 get 1 5 -o "$WORK/batchplain"
grep -q "file 5 completed" "$WORK/batchplain.err" || fail "batch plain lines: $(cat "$WORK/batchplain.err")"
grep -q "^batch .*: 2 of 2 files saved$" "$WORK/batchplain.out" || fail "batch plain: $(cat "$WORK/batchplain.out")"
[ "$(sha "$WORK/batchplain/file-5.bin")" = "$(origin_sha 5)" ] || fail "batch plain: file 5 differs"
echo "cli-e2e: get 1 5 9 started one batch; three files saved, each verified and equal to the origin's"
run partial 9 get 1 900003 9 -o "$WORK/partial/"
grep -q "^FAILED file 900003: origin_not_found" "$WORK/partial.out" || fail "partial: $(cat "$WORK/partial.out")"
grep -q "1 of 3 files failed: 900003 (origin_not_found) \[batch_incomplete\]" "$WORK/partial.err" \
  || fail "partial: the error does not name the failed file: $(cat "$WORK/partial.err")"
for id in 1 9; do
  [ "$(sha "$WORK/partial/file-$id.bin")" = "$(origin_sha "$id")" ] || fail "partial: file $id differs"
done
[ "$(find "$WORK/partial" -type f | wc -l)" = 2 ] || fail "partial: $(ls -a "$WORK/partial")"
run partialjson 9 get 5 900004 -o "$WORK/partialjson/" --json
[ "$(json partialjson 'd["status"], d["error"]["exitCode"], d["error"]["code"], d["filesSaved"]')" \
  = "partial 9 batch_incomplete 1" ] || fail "partial --json: $(cat "$WORK/partialjson.out")"
[ "$(json partialjson '[(f["fileId"], f["error"]["code"], f["error"]["stage"]) for f in d["files"] if f["status"] == "failed"]')" \
  = "[(900004, 'origin_not_found', 'server')]" ] || fail "partial --json files: $(cat "$WORK/partialjson.out")"
run allfailed 3 get 900005 900006 -o "$WORK/allfailed/" --json
[ "$(json allfailed 'd["status"], d["error"]["code"], d["filesFailed"]')" = "failed batch_files_failed 2" ] \
  || fail "all failed: $(cat "$WORK/allfailed.out")"
echo "cli-e2e: a batch with a missing file exits 9, saves the others and names it; all missing exits 3"
# --zip of files 1, 4 and 9 (the 8 MiB file 4 ends last, alone), and of 1, 5 and 9, whose files
# end at the same moment: both last writers ask for the archive, and one worker must write it
# (the batch's archive lease) and none delete it.
zip_ids="1 4 9|1 5 9"
IFS='|' read -r -a zip_sets <<<"$zip_ids"
n=0
for ids in "${zip_sets[@]}"; do
  n=$((n + 1))
  # shellcheck disable=SC2086 # the ids are words
  run "zip$n" 0 get $ids --zip -o "$WORK/zip$n/" --json
  archive=$(json "zip$n" 'd["archive"]["path"]')
  [ "$(json "zip$n" 'd["bundle"], d["filesSaved"], d["archive"]["verified"]["size"]')" = "zip 3 True" ] \
    || fail "--zip $ids: $(cat "$WORK/zip$n.out")"
  [ "$(find "$WORK/zip$n" -type f | wc -l)" = 1 ] || fail "--zip saved more than the archive: $(ls "$WORK/zip$n")"
  python3 -m zipfile -t "$archive" >"$WORK/ziptest.out" 2>&1 || fail "zipfile -t: $(cat "$WORK/ziptest.out")"
  # shellcheck disable=SC2086
  python3 - "$archive" "$ORIGIN" $ids >"$WORK/zipcheck.out" 2>&1 <<'PY' || fail "the archive's members: $(cat "$WORK/zipcheck.out")"
import sys, urllib.request, zipfile
archive, origin, ids = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(archive) as z:
    assert z.testzip() is None, "a member's CRC-32 is wrong"
    names = sorted(z.namelist())
    assert names == sorted(f"file-{i}.bin" for i in ids), names
    for i in ids:
        want = urllib.request.urlopen(f"{origin}/files/{i}").read()
        got = z.read(f"file-{i}.bin")
        assert got == want, f"file-{i}.bin: {len(got)} bytes differ from the origin's {len(want)}"
print("ok", names)
PY
  echo "cli-e2e: --zip of $ids saved one archive ($(json "zip$n" 'd["archive"]["verified"]["detail"]')); zipfile reads it, its members equal the origin's files"
done
# --priority: the job is started with it, and says so; an unknown one is a usage error.
run prio 0 get 21 -o "$WORK/files/" --json --priority high
[ "$(sha "$(json prio 'd["path"]')")" = "$(origin_sha 21)" ] \
  || fail "--priority high: file 21 differs"
run priostatus 0 status "$(json prio 'd["jobId"]')"
grep -q "^priority  high$" "$WORK/priostatus.out" || fail "status does not show the priority"
run priojson 0 status "$(json prio 'd["jobId"]')" --json
[ "$(json priojson 'd["priority"]')" = high ] || fail "--priority high: $(cat "$WORK/priojson.out")"
run badprio 2 get 21 --priority urgent
grep -q "urgent" "$WORK/badprio.err" || fail "--priority urgent: $(cat "$WORK/badprio.err")"
echo "cli-e2e: --priority high starts a high job; status shows it; an unknown one is refused"

# 5. The background runs.
waited "$GET5"
[ "$WAITED" = 0 ] || fail "get 5 exited $WAITED"
[ "$(json get5json 'd["status"], d["fileId"], d["verified"]["size"], d["verified"]["checksum"], d["follow"]')" \
  = "completed 5 True whole stream" ] || fail "get 5 --json: $(cat "$WORK/get5json.out")"
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
# `haul retry`: the failed job goes back to work as itself (it fails again: the file is still
# missing); a completed job cannot be retried (exit 1, job_not_failed).
failed_job=$(json failedjson 'd["error"]["jobId"]')
[ -n "$failed_job" ] && [ "$failed_job" != None ] || fail "the failed get did not name its job"
run retry 0 retry "$failed_job" --json
[ "$(json retry 'd["jobId"], d["redrives"]')" = "$failed_job 1" ] \
  || fail "retry --json: $(cat "$WORK/retry.out")"
run retryget 3 get --job "$failed_job" --json
[ "$(json retryget 'd["error"]["code"]')" = origin_not_found ] \
  || fail "get --job after retry: $(cat "$WORK/retryget.out")"
run retrytext 0 status "$failed_job"
grep -q "retried   1 time" "$WORK/retrytext.out" || fail "status after retry: $(cat "$WORK/retrytext.out")"
run retrydone 1 retry "$(json get5json 'd["jobId"]')" --json
[ "$(json retrydone 'd["error"]["code"]')" = job_not_failed ] \
  || fail "retry of a completed job: $(cat "$WORK/retrydone.out")"
echo "cli-e2e: retry puts a failed job back to work as itself; a completed one is refused"
waited "$FOUR"
[ "$WAITED" = 0 ] || fail "get 4 exited $WAITED"
[ "$(json four 'd["verified"]["checksum"]')" = composite ] || fail "get 4: $(cat "$WORK/four.out")"
[ "$(sha "$WORK/files/four.bin")" = "$(origin_sha 4)" ] || fail "file 4 differs from the origin"
echo "cli-e2e: the 8 MiB file verified by its composite CRC32C"
waited "$RECONNECT"
[ "$WAITED" = 0 ] || fail "get 4 through the cutting proxy exited $WAITED"
[ "$(json reconnect 'd["follow"]')" = stream ] || fail "reconnect: $(cat "$WORK/reconnect.out")"
[ "$(sha "$WORK/files/four-again.bin")" = "$(origin_sha 4)" ] || fail "file 4 (reconnect) differs"
first_id=$(sed -n 's/^relayed 1 \([0-9]*\)$/\1/p' "$WORK/cut.log" | tail -1)
[ -n "$first_id" ] || fail "the cut stream relayed no event id: $(cat "$WORK/cut.log")"
grep -q "^events 1 last-event-id=-$" "$WORK/cut.log" || fail "first stream request: $(cat "$WORK/cut.log")"
grep -q "^events 2 last-event-id=$first_id$" "$WORK/cut.log" \
  || fail "the reconnect did not send Last-Event-ID $first_id: $(cat "$WORK/cut.log")"
# Ids only go up across the connections: each state once.
ids=$(sed -n 's/^relayed [0-9]* \([0-9]*\)$/\1/p' "$WORK/cut.log" | tr '\n' ' ')
[ "$(echo "$ids" | tr ' ' '\n' | sed '/^$/d' | sort -n | uniq | tr '\n' ' ')" = "$ids" ] \
  || fail "event ids repeated or out of order across the reconnect: $ids"
echo "cli-e2e: a cut stream was resumed with Last-Event-ID $first_id (ids relayed: $ids)"
# The make dev log: the stream function served get 1's job (its "stream closed" line, written
# when a stream ends), and never the job of --follow poll.
stream_job=$(json get1json 'd["jobId"]')
poll_job=$(json pollflag 'd["jobId"]')
for _ in $(seq 1 50); do
  grep "stream closed" "$DEV_LOG" | grep -q "$stream_job" && break
  sleep 0.2
done
grep "stream closed" "$DEV_LOG" | grep -q "$stream_job" \
  || fail "the make dev log shows no stream for job $stream_job"
if grep "stream closed" "$DEV_LOG" | grep -q "$poll_job"; then
  fail "the make dev log shows a stream for the polled job $poll_job"
fi
echo "cli-e2e: make dev's stream function served job ${stream_job:0:8}, not the polled ${poll_job:0:8}"
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
