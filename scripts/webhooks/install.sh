#!/usr/bin/env bash
# Installs the test receiver's virtualenv (scripts/webhooks/requirements.txt) under $HAUL_CACHE,
# again only when the requirements change. Prints the venv's python.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
HAUL_CACHE="${HAUL_CACHE:-$HOME/.cache/haul}"
VENV="$HAUL_CACHE/webhooks-venv"
REQUIREMENTS=scripts/webhooks/requirements.txt
mkdir -p "$HAUL_CACHE"
(
  flock 9
  want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
  have=""
  [ -f "$VENV/.requirements.sha256" ] && have=$(<"$VENV/.requirements.sha256")
  if [ "$want" != "$have" ] || [ ! -x "$VENV/bin/python" ]; then
    echo "webhooks: installing $(grep -m1 '^standardwebhooks==' "$REQUIREMENTS") into $VENV" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install --quiet \
      --requirement "$REQUIREMENTS"
    echo "$want" >"$VENV/.requirements.sha256"
  fi
) 9>"$HAUL_CACHE/webhooks-venv.lock"
echo "$VENV/bin/python"
