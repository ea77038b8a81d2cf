#!/usr/bin/env bash
# The worker bench's S3 sink: s3s-fs (the `s3s` project's S3 server on a directory, Rust,
# multi-threaded), started on loopback with the local stack's credentials, so it checks every
# request's SigV4 signature as S3 does.
#
# Why not LocalStack's S3: it is one Python process that spends about 12 CPU-s per GiB it
# receives, and every tool waited on it (`sink_cores_busy` near 1.0 at both shares), so the
# side-by-side measured the sink. s3s-fs spends a fraction of that, so the tools' own pace
# shows. The bench still reports the sink's CPU beside each tool.
#
#   eval "$(scripts/bench/sink.sh up)"   # prints HAUL_BENCH_S3_ENDPOINT, HAUL_BENCH_SINK_*
#   scripts/bench/sink.sh down
#
# Pinned and built once into $HAUL_CACHE/s3s (cargo install --locked, its own target dir).
set -euo pipefail

S3S_VERSION=0.14.1 # 0.17 needs rustc 1.96
HAUL_CACHE="${HAUL_CACHE:-$HOME/.cache/haul}"
RUN_DIR="${HAUL_RUN_DIR:-$HAUL_CACHE/run}"
ROOT="$HAUL_CACHE/s3s"
BIN="$ROOT/bin/s3s-fs"
PORT="${HAUL_BENCH_SINK_PORT:-4599}"
DATA="$RUN_DIR/sink-data"
PID_FILE="$RUN_DIR/sink.pid"
LOG="$RUN_DIR/sink.log"

log() { echo "sink: $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install() {
  if [ -x "$BIN" ] && [ "$(cat "$ROOT/.version" 2>/dev/null)" = "$S3S_VERSION" ]; then
    return
  fi
  log "building s3s-fs $S3S_VERSION (once)"
  CARGO_TARGET_DIR="$HAUL_CACHE/s3s-target" cargo install --quiet --locked \
    --features binary --root "$ROOT" "s3s-fs@$S3S_VERSION" >&2
  rm -rf "$HAUL_CACHE/s3s-target"
  echo "$S3S_VERSION" >"$ROOT/.version"
}

down() {
  local pid
  pid=$(cat "$PID_FILE" 2>/dev/null) || return 0
  if [[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF s3s-fs; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE"
  rm -rf "$DATA"
}

up() {
  : "${AWS_ACCESS_KEY_ID:?set by the local stack}" "${AWS_SECRET_ACCESS_KEY:?set by the local stack}"
  install
  down
  port_open "$PORT" && { log "port $PORT is in use"; exit 1; }
  mkdir -p "$DATA" "$RUN_DIR"
  # Its own session (pid == pgid): the bench reads the group's CPU time from /proc.
  (exec setsid nohup "$BIN" --host 127.0.0.1 --port "$PORT" \
    --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" \
    "$DATA" >"$LOG" 2>&1 </dev/null 9>&-) &
  echo $! >"$PID_FILE"
  for _ in $(seq 100); do port_open "$PORT" && break; sleep 0.1; done
  port_open "$PORT" || { log "s3s-fs did not start (log: $LOG)"; exit 1; }
  log "s3s-fs $S3S_VERSION on 127.0.0.1:$PORT (pid $(cat "$PID_FILE"))"
  echo "export HAUL_BENCH_S3_ENDPOINT=http://127.0.0.1:$PORT"
  echo "export HAUL_BENCH_SINK_PGID=$(cat "$PID_FILE")"
  echo "export HAUL_BENCH_SINK_NAME='s3s-fs $S3S_VERSION'"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
