#!/usr/bin/env bash
# Fail when nbdev-export or nbdev-clean would change anything: the notebooks are the source.
set -euo pipefail
BIN=${1:-.venv/bin}
snap() { { echo README.md; find nbs eyenet -type f \( -name '*.ipynb' -o -name '*.py' \) -not -path '*/.ipynb_checkpoints/*' \
         -not -path '*/__pycache__/*' -not -path 'nbs/_tmp/*'; } | sort | xargs sha1sum; }
before=$(snap)
"$BIN/nbdev-export"
"$BIN/nbdev-clean"
"$BIN/python" tools/readme.py >/dev/null
after=$(snap)
if [ "$before" != "$after" ]; then
  echo "nbdev-export / nbdev-clean / tools/readme.py changed these files; run them and commit the result:" >&2
  diff <(echo "$before") <(echo "$after") | grep '^[<>]' | awk '{print $3}' | sort -u >&2
  exit 1
fi
echo "notebooks and library in sync"
