#!/usr/bin/env bash
# make dev with callers, end to end (issue 26): starts `HAUL_DEV_AUTH=1 make dev` on ports of its
# own (always its own: the shared make dev of scripts/test.sh is open) and checks over real HTTP
# that the API is behind a JWT authorizer like API Gateway's and the stream checks tokens too:
# no token and a bad signature are 401; callers A and B each start a job with scripts/dev-token
# and A's history shows A's job and not B's; `high` without the scope is 403
# priority_not_allowed and with `--scope haul/high` 202; A's stream opens with A's token (not
# without one, not with B's); batches over a caller's tokens or slots are refused whole; and a
# noisy caller's backlog does not hold back another's job (target/e2e/noisy-neighbour.json).
# Ctrl-C then stops make dev and everything it started, issuer and front included.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Its own make dev, whatever scripts/test.sh shares (that one runs without callers).
unset HAUL_E2E_DEV_SHARED HAUL_E2E_DEV_LOG HAUL_DEV_RATE_LIMIT
source scripts/lib/dev-stack.sh

fail() {
  echo "dev-auth-e2e: FAIL: $*" >&2
  if [ -n "$DEV_LOG" ]; then tail -40 "$DEV_LOG" >&2; fi
  exit 1
}
started=$(date +%s)

export HAUL_DEV_AUTH=1
export HAUL_DEV_ISSUER_PORT="${HAUL_AUTH_E2E_ISSUER_PORT:-9463}"
trap dev_stack_stop EXIT
dev_stack_up dev-auth-e2e auth-e2e "${HAUL_AUTH_E2E_API_PORT:-9460}" \
  "${HAUL_AUTH_E2E_ORIGIN_PORT:-9461}" "${HAUL_AUTH_E2E_WEB_PORT:-9462}"
API=$DEV_API
grep -q "callers on" "$DEV_LOG" || fail "make dev did not start with callers (HAUL_DEV_AUTH=1)"

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# call TOKEN METHOD PATH [BODY]: prints the status, then the body, into $OUT.
OUT=$(mktemp)
call() {
  local token=$1 method=$2 path=$3 body=${4:-}
  local args=(-sS -m 30 -o "$OUT" -w '%{http_code}' -X "$method" "$API$path")
  [ -n "$token" ] && args+=(-H "authorization: Bearer $token")
  [ -n "$body" ] && args+=(-H 'content-type: application/json' -d "$body")
  curl "${args[@]}"
}
expect() { # STATUS what
  local got=$1 want=$2 what=$3
  [ "$got" = "$want" ] || fail "$what: $got, not $want: $(head -c 400 "$OUT")"
  echo "dev-auth-e2e: $what: $got"
}

# /health stays open, as on AWS (its route has no authorizer).
expect "$(call "" GET /health)" 200 "health without a token"

# No token, and a token whose signature is not the issuer's: 401 before any function runs.
expect "$(call "" POST /v1/download/initiate '{"file_id": 1}')" 401 "initiate without a token"
[ "$(json 'd["message"]' <"$OUT")" = Unauthorized ] || fail "the 401 is not API Gateway's"
expect "$(call "" GET /v1/downloads)" 401 "history without a token"
A=$(scripts/dev-token alice) || fail "scripts/dev-token alice"
B=$(scripts/dev-token bob) || fail "scripts/dev-token bob"
# Claims changed after signing (sub: alice -> mallory): the signature no longer matches.
forged=$(python3 - "$A" <<'PY'
import base64, json, sys
head, body, sig = sys.argv[1].split(".")
claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
claims["sub"] = "mallory"
body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
print(".".join([head, body, sig]))
PY
)
expect "$(call "$forged" GET /v1/downloads)" 401 "history with a forged token"
expect "$(call "$A" GET /v1/downloads)" 200 "history with A's token"

# Two callers, one job each (file 1 of the dev catalog: 2 MiB over about 3 s).
expect "$(call "$A" POST /v1/download/initiate '{"file_id": 1}')" 202 "A starts a job"
job_a=$(json 'd["jobId"]' <"$OUT")
expect "$(call "$B" POST /v1/download/initiate '{"file_id": 5}')" 202 "B starts a job"
job_b=$(json 'd["jobId"]' <"$OUT")
expect "$(call "$A" GET /v1/downloads)" 200 "A's history"
ids=$(json '" ".join(i["jobId"] for i in d["items"])' <"$OUT")
[[ " $ids " == *" $job_a "* ]] || fail "A's history lacks A's job $job_a: $ids"
[[ " $ids " != *" $job_b "* ]] || fail "A's history shows B's job $job_b"
echo "dev-auth-e2e: A's history shows A's job and not B's"
expect "$(call "$A" GET "/v1/download/status/$job_b")" 404 "A reading B's job"

# high is an entitlement: the scope haul/high (the template's HighPriorityScope default).
expect "$(call "$A" POST /v1/download/initiate '{"file_id": 1, "priority": "high"}')" 403 \
  "high without the scope"
[ "$(json 'd["code"]' <"$OUT")" = priority_not_allowed ] || fail "403 without priority_not_allowed"
A_HIGH=$(scripts/dev-token alice --scope haul/high) || fail "scripts/dev-token --scope"
expect "$(call "$A_HIGH" POST /v1/download/initiate '{"file_id": 1, "priority": "high"}')" 202 \
  "high with --scope haul/high"

# The stream checks the same tokens itself (on AWS it is a function URL, not behind the API).
events="/v1/download/$job_a/events"
expect "$(call "" GET "$events")" 401 "A's stream without a token"
expect "$(call "$B" GET "$events")" 404 "A's stream with B's token"
code=$(curl -sS -N -m 60 -o "$OUT" -w '%{http_code}' -H "authorization: Bearer $A" "$API$events") \
  || fail "A's stream did not end within 60 s"
[ "$code" = 200 ] || fail "A's stream with A's token: $code"
grep -q '"status":"completed"' "$OUT" || fail "A's stream did not carry the completion: $(tail -c 400 "$OUT")"
echo "dev-auth-e2e: A's stream with A's token: 200, to the completion"

# Fair shares with the template's defaults: limits count files, and a noisy caller's backlog
# does not hold back another caller's job (scripts/fairness/noisy.py).
python3 scripts/fairness/noisy.py "$API" || fail "fair shares"
expect "$(call "$A" POST /v1/download/initiate '{"file_id": 1}')" 202 "A, meanwhile"

rm -f "$OUT"
dev_stack_down
trap - EXIT
rm -f "$DEV_LOG"
echo "dev-auth-e2e: ok ($(($(date +%s) - started)) s)"
