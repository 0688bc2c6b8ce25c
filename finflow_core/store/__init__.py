"""FinFlow's database layer: SQLAlchemy Core tables, Alembic migrations, the Store handle.

Open the database with :func:`open_store` (it migrates to the newest schema); write inside
``with store.begin() as conn:`` and read inside ``with store.connect() as conn:``.
"""

from finflow_core.store.engine import Store, make_engine, normalise_url
from finflow_core.store.migrate import SchemaVersionError, current_revision, upgrade_to_head
from finflow_core.store.opening import open_store

__all__ = [
    "SchemaVersionError",
    "Store",
    "current_revision",
    "make_engine",
    "normalise_url",
    "open_store",
    "upgrade_to_head",
]
