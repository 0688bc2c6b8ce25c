#!/usr/bin/env bash
# Re-lock requirements.txt from pyproject.toml (runtime dependencies and every extra), with
# hashes, using pip-tools in a throw-away virtual environment. Run it after changing the
# dependencies in pyproject.toml; commit both files.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet "pip-tools>=7.6,<8"
"$tmp/venv/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
  --no-emit-index-url --no-emit-find-links --extra dask --extra postgres --extra test \
  --output-file requirements.txt pyproject.toml
echo "pinned $(grep -c '==' requirements.txt) packages"
