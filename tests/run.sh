#!/usr/bin/env bash
# The project's test command: installs everything the tests need, then runs them.
# Debian's chromium drives the browser tests (never `playwright install`, which downloads a browser).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo "sudo")
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
python -m pip install -q -r requirements-test.txt
python -m pytest -q "$@"
