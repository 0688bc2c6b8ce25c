#!/usr/bin/env bash
# evidently 0.7 does not import with pandas 3: give it its own venv (gitignored).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$here/.venv-evidently/bin/python" ]; then
  python3 -m venv "$here/.venv-evidently"
fi
"$here/.venv-evidently/bin/pip" install -q "pandas<3" "evidently==0.7.*" pyarrow
"$here/.venv-evidently/bin/python" -c "import evidently, pandas; print('evidently', evidently.__version__, 'pandas', pandas.__version__)"
