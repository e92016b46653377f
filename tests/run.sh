#!/usr/bin/env bash
# The project's test command: installs everything the tests need, then runs them.
# It uses the active virtual environment, else the README's .venv, else the python on PATH.
# Debian's chromium drives the browser tests (never `playwright install`, which downloads a browser).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
else
  PY=$(command -v python || command -v python3)
fi
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo "sudo")
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
"$PY" -m pip install -q -r requirements-test.txt
"$PY" -m pytest -q "$@"
