"""Alembic environment for FinFlow.

FinFlow runs migrations from code (:func:`finflow_core.store.migrate.upgrade_to_head`),
which hands over an open connection in ``config.attributes["connection"]`` inside a
transaction it already holds a lock for. Developers may also use the ``alembic`` command
(e.g. to write a new revision); then the URL comes from ``-x url=...``, the ini file's
``sqlalchemy.url`` or ``$FINFLOW_DATABASE_URL``.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from finflow_core.store.engine import make_engine
from finflow_core.store.migrate import load_all_tables

config = context.config
metadata = load_all_tables()  # every table module, for autogenerate


def _url() -> str:
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
        or os.environ.get("FINFLOW_DATABASE_URL")
    )
    if not url:
        raise SystemExit("no database URL: pass -x url=... or set FINFLOW_DATABASE_URL")
    return url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
