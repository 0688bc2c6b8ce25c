#!/usr/bin/env bash
# Set everything up and run FinFlow with its embedded defaults: a SQLite database under
# data/, a seeded demo model, sample weekly batches in data/samples/. On the first run it
# prints a one-time set-up code: open the app and enter it to create the first admin.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
export FINFLOW_HOME="${FINFLOW_HOME:-$PWD}"
.venv/bin/finflow setup --demo
port="${FINFLOW_PORT:-8501}"
address="${FINFLOW_ADDRESS:-127.0.0.1}"
echo "==> FinFlow on http://$address:$port  (Ctrl+C stops it)"
exec .venv/bin/streamlit run app.py --server.address "$address" --server.port "$port" \
  --server.headless true --browser.gatherUsageStats false
