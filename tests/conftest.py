"""Shared pytest fixtures. ``tests/`` is on sys.path (rootdir conftest, prepend import mode)."""

import os  # noqa: E402
import tempfile  # noqa: E402

from pg import pg_cluster, pg_url, store_url  # noqa: F401  (PostgreSQL cluster, two backends)

# No test run may make an installation key in the working tree (the default key file lies
# under FINFLOW_HOME, which is the working directory when a test sets none): tests that do
# not bring their own key get one in a throw-away folder. Tests of key files unset this.
os.environ.setdefault("FINFLOW_KEY_FILE", os.path.join(
    tempfile.mkdtemp(prefix="finflow-test-key-"), "keys", "installation.key"))
