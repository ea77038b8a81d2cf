#!/usr/bin/env bash
# The live stream end to end (issue 16): over make dev's real HTTP, and through a real nginx
# (Debian's nginx-light, started here) with proxy_read_timeout 10s and default buffering, in
# front of make dev and, as the control, of the origin. The checks are scripts/stream/e2e.py;
# the report goes to target/e2e/stream.json. Under scripts/test.sh it uses the shared make dev.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/dev-stack.sh

NGINX="${NGINX:-/usr/sbin/nginx}"
NGINX_PORT="${HAUL_STREAM_NGINX_PORT:-9425}"
fail() {
  echo "stream-e2e: FAIL: $*" >&2
  if [ -n "${NGINX_DIR:-}" ] && [ -f "$NGINX_DIR/error.log" ]; then tail -20 "$NGINX_DIR/error.log" >&2; fi
  if [ -n "$DEV_LOG" ]; then tail -40 "$DEV_LOG" >&2; fi
  exit 1
}

if [ ! -x "$NGINX" ]; then
  [ "$(id -u)" = 0 ] || fail "$NGINX is missing; install Debian's nginx-light package"
  echo "stream-e2e: installing nginx-light"
  # Serialized with the other apt installs by scripts/prepare.sh; the package's own service
  # is not needed (this script runs its own nginx on loopback).
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
fi
"$NGINX" -v 2>&1
[ "${1:-}" = --install-only ] && exit 0

NGINX_DIR=$(mktemp -d)
stop_all() {
  if [ -f "$NGINX_DIR/nginx.pid" ]; then kill "$(cat "$NGINX_DIR/nginx.pid")" 2>/dev/null || true; fi
  dev_stack_stop
}
trap stop_all EXIT
dev_stack_up stream-e2e stream-e2e "${HAUL_STREAM_E2E_API_PORT:-9420}" "${HAUL_STREAM_E2E_ORIGIN_PORT:-9421}"

mkdir -p "$NGINX_DIR/tmp"
cat >"$NGINX_DIR/nginx.conf" <<CONF
worker_processes 1;
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/error.log;
events { worker_connections 64; }
http {
  access_log $NGINX_DIR/access.log;
  client_body_temp_path $NGINX_DIR/tmp/body;
  proxy_temp_path $NGINX_DIR/tmp/proxy;
  fastcgi_temp_path $NGINX_DIR/tmp/fastcgi;
  uwsgi_temp_path $NGINX_DIR/tmp/uwsgi;
  scgi_temp_path $NGINX_DIR/tmp/scgi;
  # The test's point: a proxy that gives up on 10 s of silence, and buffers by default.
  proxy_read_timeout 10s;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location /origin/ { proxy_pass $DEV_ORIGIN/; }
    location / { proxy_pass $DEV_API; }
  }
}
CONF
"$NGINX" -c "$NGINX_DIR/nginx.conf" -p "$NGINX_DIR" || fail "nginx did not start"
for _ in $(seq 1 50); do
  curl -fsS -o /dev/null "http://127.0.0.1:$NGINX_PORT/health" && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$NGINX_PORT/health" | grep -q '"ok"' || fail "nginx does not reach make dev"

mkdir -p target/e2e
python3 scripts/stream/e2e.py --api "$DEV_API" --origin "$DEV_ORIGIN" \
  --nginx "http://127.0.0.1:$NGINX_PORT" --report target/e2e/stream.json ||
  fail "the stream checks (above)"
echo "stream-e2e: nginx access log:"
awk '{print "  " $7, $9}' "$NGINX_DIR/access.log" | grep -v '/health' || true
stop_all
trap - EXIT
rm -rf "$NGINX_DIR"
echo "stream-e2e: ok"
