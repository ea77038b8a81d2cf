#!/usr/bin/env bash
# Property-based check of the running service against openapi.yaml: starts its own `make dev`,
# runs Schemathesis (pinned, in a virtualenv under $HAUL_CACHE) with a fixed seed against it,
# and fails on any finding: a 5xx, a status the spec does not list, a content type it does not
# list, a body or header that violates its schema, invalid input accepted, a wrong method not
# answered 405 with `Allow`. Reports (JUnit, NDJSON) go to target/schemathesis/.
#
# Under scripts/test.sh it runs against the make dev all end-to-end stages share
# (HAUL_E2E_DEV_SHARED=1, scripts/lib/dev-stack.sh), last of them: its jobs then fetch from
# that make dev's catalog origin, paced and few at a time (four pollers), instead of the small
# origin below, and whatever is still queued when it ends is stopped with make dev.
#
#   HAUL_ST_PORT          API port of the make dev it starts (default 9430)
#   HAUL_ST_ORIGIN_PORT   port of the small origin it serves the jobs' files from (9431)
#   HAUL_ST_SEED          Hypothesis seed (default 20261125)
#   HAUL_ST_MAX_EXAMPLES  examples per operation and phase (default 200)
#
# The jobs it starts fetch from a small local origin (odd file ids: 1 KiB; even: 404), not the
# dev catalog's megabytes, so that hundreds of jobs cost the machine nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/dev-stack.sh

HAUL_CACHE="${HAUL_CACHE:-$HOME/.cache/haul}"
VENV="$HAUL_CACHE/schemathesis-venv"
REQUIREMENTS=scripts/schemathesis-requirements.txt
PORT="${HAUL_ST_PORT:-9430}"
ORIGIN_PORT="${HAUL_ST_ORIGIN_PORT:-9431}"
SEED="${HAUL_ST_SEED:-20261125}"
MAX_EXAMPLES="${HAUL_ST_MAX_EXAMPLES:-200}"
REPORT_DIR="${CARGO_TARGET_DIR:-target}/schemathesis"
SHARED=0
[ "${HAUL_E2E_DEV_SHARED:-}" = 1 ] && SHARED=1

log() { echo "schemathesis: $*" >&2; }
fail() {
  log "FAIL: $*"
  [ -f "${DEV_LOG:-}" ] && tail -40 "$DEV_LOG" >&2
  exit 1
}

# --- Schemathesis, pinned, reinstalled only when the requirements change --------------------
install() {
  local want have=""
  want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
  [ -f "$VENV/.requirements.sha256" ] && have=$(<"$VENV/.requirements.sha256")
  if [ "$want" = "$have" ] && [ -x "$VENV/bin/st" ]; then
    return 0
  fi
  log "installing $(grep -m1 '^schemathesis==' "$REQUIREMENTS") into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install --quiet \
    --requirement "$REQUIREMENTS"
  echo "$want" >"$VENV/.requirements.sha256"
}
mkdir -p "$HAUL_CACHE"
(
  flock 9
  install
) 9>"$HAUL_CACHE/.schemathesis.lock"
# scripts/prepare.sh installs ahead of time, while make test compiles.
[ "${1:-}" = --install-only ] && exit 0

# --- The origin the jobs fetch from (when this script starts its own make dev) ---------------
WORK=$(mktemp -d)
ORIGIN_LOG="$WORK/origin.log"
DEV_LOG="$WORK/dev.log"
ORIGIN_PID=""
stop_all() {
  dev_stack_stop
  if [ -n "$ORIGIN_PID" ]; then
    kill "$ORIGIN_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

start_origin() {
"$VENV/bin/python" - "$ORIGIN_PORT" >"$ORIGIN_LOG" 2>&1 <<'PY' &
import re, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Files(BaseHTTPRequestHandler):
    def do_GET(self):
        match = re.fullmatch(r"/files/([0-9]+)", self.path)
        if not match or int(match.group(1)) % 2 == 0:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = bytes(range(256)) * 4
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Files).serve_forever()
PY
ORIGIN_PID=$!
}

# --- make dev ---------------------------------------------------------------------------------
if [ "$SHARED" = 0 ]; then
  start_origin
  export ORIGIN_URL_TEMPLATE="http://127.0.0.1:$ORIGIN_PORT/files/{file_id}"
  # cargo lambda watch must not rebuild and restart the functions mid-run when a source file
  # changes (its global configuration file; the router stays the workspace's).
  printf '[watch]\nignore_changes = true\n' >"$WORK/cargo-lambda.toml"
  export CARGO_LAMBDA_GLOBAL="$WORK/cargo-lambda.toml"
fi
# The page server, if any, on a free port of the system's choosing (web port 0).
dev_stack_up schemathesis st "$PORT" "$ORIGIN_PORT" 0
API=$DEV_API
if [ "$SHARED" = 0 ]; then
  kill -0 "$ORIGIN_PID" 2>/dev/null || fail "the origin did not start: $(cat "$ORIGIN_LOG")"
fi
# cargo lambda starts a function's first instance on its first request (`cargo run`, which
# waits for any other cargo on the machine): start both API functions before timing anything.
curl -fsS -m 600 -o /dev/null "$API/health" || fail "GET /health"
code=$(curl -sS -m 600 -o /dev/null -w '%{http_code}' -X POST "$API/v1/download/initiate")
[ "$code" = 415 ] || fail "POST /v1/download/initiate without a body answered $code, not 415"

# cargo lambda watch, make dev's stand-in for API Gateway, answers 500 by itself, without
# invoking the function, to a request whose body is not UTF-8 or whose header values are not
# ASCII (API Gateway base64-encodes such bodies). The hook below makes those requests
# representable; tests/tests/integration/openapi.rs sends the originals to the handlers.
cat >"$WORK/hooks.py" <<'PY'
import schemathesis


@schemathesis.hook
def before_call(context, case, kwargs):
    if isinstance(case.body, (bytes, bytearray)):
        try:
            bytes(case.body).decode("utf-8")
        except UnicodeDecodeError:
            case.body = bytes(case.body).decode("utf-8", "replace").encode("utf-8")
    for name, value in list((case.headers or {}).items()):
        if isinstance(value, str) and not value.isascii():
            case.headers[name] = value.encode("ascii", "backslashreplace").decode("ascii")
PY
export SCHEMATHESIS_HOOKS="$WORK/hooks.py"

# --- The run ----------------------------------------------------------------------------------
# Every check but positive_data_acceptance: a schema-valid request may rightly be refused
# (a `url` while URL sources are off, a reused Idempotency-Key with another payload); and but
# use_after_free: DELETE /v1/download/{jobId} cancels a job, it does not delete it, so the job
# stays readable as `cancelled` at every route under its path, the live stream included
# (openapi.yaml says so), which that check reads as a deleted resource still served.
SPEC="$PWD/openapi.yaml"
CONFIG="$PWD/scripts/schemathesis.toml"
case "$REPORT_DIR" in /*) ;; *) REPORT_DIR="$PWD/$REPORT_DIR" ;; esac
rm -rf "$REPORT_DIR"
mkdir -p "$REPORT_DIR"
run_started=$(date +%s)
set +e
# From the scratch directory: Schemathesis keeps a cache of its findings in the working directory.
(
  cd "$WORK"
  "$VENV/bin/st" --config-file "$CONFIG" run "$SPEC" \
    --url "$API" \
    --seed "$SEED" \
    --max-examples "$MAX_EXAMPLES" \
    --checks all \
    --exclude-checks positive_data_acceptance,use_after_free \
    --workers 1 \
    --request-timeout 30 \
    --output-sanitize false \
    --generation-database none \
    --suppress-health-check too_slow \
    --no-color \
    --report junit,ndjson \
    --report-dir "$REPORT_DIR"
)
status=$?
set -e
log "run took $(($(date +%s) - run_started)) s (seed $SEED, up to $MAX_EXAMPLES examples per operation)"
[ "$status" = 0 ] || fail "Schemathesis found problems (exit $status); reports in $REPORT_DIR"
dev_stack_down
log "ok"
