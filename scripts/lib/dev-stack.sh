# shellcheck shell=bash
# Start, reuse and stop `make dev` for the end-to-end scripts (dev-e2e.sh, cli-e2e.sh,
# web-e2e.sh, schemathesis.sh) and scripts/test.sh. Source it; the caller defines
# `fail MESSAGE` (print, exit non-zero) and may read $DEV_LOG in it.
#
# One make dev for every stage: scripts/test.sh starts it once and exports
#   HAUL_E2E_DEV_SHARED=1   a make dev runs for all stages: reuse it, do not start or stop one
#   HAUL_E2E_DEV_LOG        its output (the "haul dev is ready" line, the page's address)
#   HAUL_DEV_PORT, HAUL_DEV_ORIGIN_PORT, HAUL_DEV_WEB_PORT, HAUL_DEV_PREFIX   where it runs
# Without HAUL_E2E_DEV_SHARED=1 each script starts (and stops) a make dev of its own, on its
# own ports, as when run by hand.
#
#   dev_stack_up LABEL NAME API_PORT ORIGIN_PORT [WEB_PORT]
#       reuse the shared make dev, or start one in its own session (resources prefixed
#       haul-NAME-<pid>) and wait until it is ready. Sets DEV_API, DEV_ORIGIN, DEV_LOG, DEV_PID
#       (empty when shared) and exports HAUL_DEV_* for it.
#   dev_stack_stop    Ctrl-C to the make dev this script started, if any, and wait up to 30 s
#                     for it to end (for traps)
#   dev_stack_down    stop it and check it stopped everything: the process, its port, and every
#                     process that carries its HAUL_DEV_PREFIX (function instances run in
#                     sessions of their own); fails otherwise. Nothing to do when shared.

# Outputs for the sourcing script.
# shellcheck disable=SC2034
DEV_API="" DEV_ORIGIN=""
DEV_PID=""
DEV_LOG="${DEV_LOG:-}"
DEV_LABEL=e2e

dev_stack_up() {
  DEV_LABEL=$1
  local name=$2 api_port=$3 origin_port=$4 web_port=${5:-}
  local started_at
  started_at=$(date +%s)
  if [ "${HAUL_E2E_DEV_SHARED:-}" = 1 ]; then
    : "${HAUL_DEV_PORT:?HAUL_E2E_DEV_SHARED=1 needs HAUL_DEV_PORT}"
    : "${HAUL_DEV_ORIGIN_PORT:?HAUL_E2E_DEV_SHARED=1 needs HAUL_DEV_ORIGIN_PORT}"
    : "${HAUL_DEV_PREFIX:?HAUL_E2E_DEV_SHARED=1 needs HAUL_DEV_PREFIX}"
    DEV_LOG="${HAUL_E2E_DEV_LOG:?HAUL_E2E_DEV_SHARED=1 needs HAUL_E2E_DEV_LOG}"
    DEV_PID=""
    DEV_API="http://127.0.0.1:$HAUL_DEV_PORT"
    DEV_ORIGIN="http://127.0.0.1:$HAUL_DEV_ORIGIN_PORT"
    curl -fsS -m 60 -o /dev/null "$DEV_API/health" ||
      fail "the shared make dev does not answer on $DEV_API/health"
    echo "$DEV_LABEL: reusing the running make dev ($DEV_API)"
    return 0
  fi
  export HAUL_DEV_PORT="$api_port"
  export HAUL_DEV_ORIGIN_PORT="$origin_port"
  export HAUL_DEV_PREFIX="haul-$name-$$"
  if [ -n "$web_port" ]; then
    export HAUL_DEV_WEB_PORT="$web_port"
  fi
  DEV_API="http://127.0.0.1:$HAUL_DEV_PORT"
  DEV_ORIGIN="http://127.0.0.1:$HAUL_DEV_ORIGIN_PORT"
  [ -n "$DEV_LOG" ] || DEV_LOG=$(mktemp)
  : >"$DEV_LOG"
  setsid make dev >"$DEV_LOG" 2>&1 &
  DEV_PID=$!
  for _ in $(seq 1 2400); do
    grep -q "haul dev is ready" "$DEV_LOG" && break
    kill -0 "$DEV_PID" 2>/dev/null || fail "make dev exited early"
    sleep 0.5
  done
  grep -q "haul dev is ready" "$DEV_LOG" || fail "make dev not ready after 20 minutes"
  echo "$DEV_LABEL: make dev ready after $(($(date +%s) - started_at)) s"
}

dev_stack_stop() {
  [ -n "$DEV_PID" ] || return 0
  local pid=$DEV_PID
  DEV_PID=""
  kill -INT -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
}

dev_stack_down() {
  [ -n "$DEV_PID" ] || return 0
  local pid=$DEV_PID leftover=""
  dev_stack_stop
  if kill -0 "$pid" 2>/dev/null; then fail "make dev still running after SIGINT"; fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$HAUL_DEV_PORT") 2>/dev/null; then
    fail "port $HAUL_DEV_PORT still open after make dev stopped"
  fi
  for _ in $(seq 1 20); do
    leftover=$(grep -l "HAUL_DEV_PREFIX=$HAUL_DEV_PREFIX" /proc/[0-9]*/environ 2>/dev/null || true)
    [ -z "$leftover" ] && break
    sleep 0.5
  done
  [ -z "$leftover" ] || fail "processes left running after make dev stopped: $leftover"
  echo "$DEV_LABEL: make dev stopped, and everything it started"
}
