#!/usr/bin/env bash
# Set everything up and run FinFlow with its embedded defaults: a SQLite database under
# data/, a seeded demo model, sample weekly batches in data/samples/. On the first run it
# prints a one-time set-up code: open the app and enter it to create the first admin.
#
# The server is `streamlit run serve.py`: Streamlit's ASGI mode (st.App) serving app.py
# plus FinFlow's session-cookie route and upload guard (see serve.py). Every step says what
# it is doing; the first run installs (about a minute where the registry is fast) and
# trains the demo model (under a minute on two free cores), later runs start at once.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
echo "==> [1/3] Python environment (.venv)"
./scripts/bootstrap.sh
export FINFLOW_HOME="${FINFLOW_HOME:-$PWD}"
echo "==> [2/3] store, demo model and sample batches (first run only)"
.venv/bin/finflow setup --demo
port="${FINFLOW_PORT:-8501}"
address="${FINFLOW_ADDRESS:-127.0.0.1}"
echo "==> [3/3] starting FinFlow on http://$address:$port"
# Say when the server answers (and how long the whole start took), then get out of the way.
.venv/bin/python - "$address" "$port" "$started" "$SECONDS" <<'EOF' &
import sys, time, urllib.request
address, port, started, now = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
begin = time.monotonic() - (now - started)
for _ in range(600):
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/_stcore/health", timeout=1) as r:
            if r.read().strip() == b"ok":
                print(f"==> FinFlow is ready on http://{address}:{port} "
                      f"({time.monotonic() - begin:.0f} s after start; Ctrl+C stops it)", flush=True)
                break
    except OSError:
        time.sleep(0.2)
EOF
exec .venv/bin/streamlit run serve.py --server.address "$address" --server.port "$port" \
  --server.headless true --browser.gatherUsageStats false
