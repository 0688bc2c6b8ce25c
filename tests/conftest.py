"""Shared pytest fixtures. ``tests/`` is on sys.path (rootdir conftest, prepend import mode)."""

import os  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path

import pytest
from pg import pg_cluster, pg_url, store_url  # noqa: F401  (PostgreSQL cluster, two backends)

# No test run may make an installation key in the working tree (the default key file lies
# under FINFLOW_HOME, which is the working directory when a test sets none): tests that do
# not bring their own key get one in a throw-away folder. Tests of key files unset this.
os.environ.setdefault("FINFLOW_KEY_FILE", os.path.join(
    tempfile.mkdtemp(prefix="finflow-test-key-"), "keys", "installation.key"))
# the same for anchors read before the per-test folder below is set (session-scoped configs)
os.environ.setdefault("FINFLOW_ANCHOR_DIR", tempfile.mkdtemp(prefix="finflow-test-anchors-"))


@pytest.fixture(autouse=True)
def _anchors_apart(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Audit anchors of each test in a folder of its own: never in the working tree (the default
    folder lies under FINFLOW_HOME, the working directory when a test sets none), and never
    one test's anchors checked against another test's database. Installations of the store
    tests put them under their own home (``store_helpers`` unsets this)."""
    folder = tmp_path_factory.mktemp("anchors")
    monkeypatch.setenv("FINFLOW_ANCHOR_DIR", str(folder))
    return folder
