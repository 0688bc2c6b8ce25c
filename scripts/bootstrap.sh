#!/usr/bin/env bash
# Create .venv and install FinFlow's locked requirements (skipped when nothing changed).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "FinFlow needs Python 3.11 or newer as '$PYTHON' (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.finflow-requirements
want="$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing pinned requirements into .venv (first time: about a minute)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  # the lock (pip-compile, with hashes): every package at the version the tests ran with;
  # one line per package, so a long install never looks stuck
  .venv/bin/python -m pip install --progress-bar off --require-hashes -r requirements.txt \
    | { grep --line-buffered -E '^(Collecting|Installing collected|Successfully installed)' || true; } \
    | sed -u -e 's/^Collecting /    fetching /' -e 's/^Installing collected packages:.*/    installing.../' \
        -e 's/^Successfully installed.*/    installed/'
  .venv/bin/python -m pip install --quiet --no-deps -e .
  echo "$want" > "$stamp"
fi
