#!/usr/bin/env bash
# Installs Debian's unzip when missing: the bundle tests check every archive with `unzip -t`
# besides Python's zipfile (scripts/zip/verify.py). scripts/prepare.sh runs this in its chain
# of apt installs (apt holds one lock).
set -euo pipefail
command -v unzip >/dev/null && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "zip: unzip is missing; install Debian's unzip package" >&2
  exit 1
fi
echo "zip: installing unzip"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unzip >/dev/null 2>&1 ||
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unzip >/dev/null; }
