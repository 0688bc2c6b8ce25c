"""Shared pytest fixtures. ``tests/`` is on sys.path (rootdir conftest, prepend import mode)."""

from pg import pg_cluster, pg_url, store_url  # noqa: F401  (PostgreSQL cluster, two backends)
