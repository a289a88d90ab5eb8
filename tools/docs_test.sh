#!/usr/bin/env bash
# Check the built docs site (`make docs` -> _docs/) in headless Chromium: every page loads, its links resolve,
# its figures and API reference are there (tools/docs_check.py). Installs Debian's chromium when no
# Chromium/Chrome is found (as root, or with sudo). Usage: bash tools/docs_test.sh [.venv/bin]
set -euo pipefail
BIN=${1:-.venv/bin}
cd "$(dirname "$0")/.."

find_browser() {
  local b
  for b in "${CHROME:-}" chromium google-chrome-stable google-chrome chromium-browser; do
    if [ -n "$b" ] && command -v "$b" >/dev/null 2>&1; then command -v "$b"; return 0; fi
  done
  return 1
}

if ! browser=$(find_browser); then
  echo "docs-test: no Chromium found; installing Debian's chromium with apt-get"
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium; } >/tmp/docs-test-apt.log 2>&1; then
    tail -20 /tmp/docs-test-apt.log >&2
    echo "docs-test: could not install chromium; install it or set CHROME=/path/to/chrome" >&2
    exit 1
  fi
  browser=$(find_browser)
fi

exec "$BIN/python" tools/docs_check.py --browser "$browser"
