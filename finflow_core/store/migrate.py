"""Run FinFlow's Alembic migrations from code: users need no ``alembic.ini`` on disk.

The migration scripts live in ``finflow_core/store/migrations`` (shipped with the package).
Upgrades run in one transaction that holds a lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL:
an advisory lock), so two processes starting at once do not both migrate. Nothing here ever
downgrades: a database from a newer FinFlow is refused rather than altered.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, MetaData, text

from finflow_core.errors import FinFlowError
from finflow_core.store.tables import READ_ONLY_OPTION, metadata

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: pg_advisory_xact_lock key held while migrating ("FinFlow" in ASCII).
PG_MIGRATION_LOCK_KEY = 0x46696E466C6F77


class SchemaVersionError(FinFlowError):
    """The database schema cannot be brought to this FinFlow's version."""

    exit_code = 13


def load_all_tables() -> MetaData:
    """Import every table module of the store package and return the shared MetaData.

    Table modules (``tables.py``, ``*_tables.py``) register on one MetaData when imported;
    autogenerate and schema checks need all of them, not just the ones imported so far.
    """
    package = Path(__file__).resolve().parent
    for module in sorted(package.glob("*tables.py")):
        importlib.import_module(f"finflow_core.store.{module.stem}")
    return metadata


def alembic_config(script_location: str | Path | None = None) -> Config:
    """An Alembic Config built in memory, pointing at the packaged migrations."""
    cfg = Config()
    location = str(script_location or MIGRATIONS_DIR)
    cfg.set_main_option("script_location", location.replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    return cfg


def head_revision(script_location: str | Path | None = None) -> str:
    """The newest migration this FinFlow ships."""
    script = ScriptDirectory.from_config(alembic_config(script_location))
    heads = script.get_heads()
    if len(heads) != 1:
        raise SchemaVersionError(
            f"the migrations have {len(heads)} heads ({', '.join(heads)}); a merge migration "
            "is needed before FinFlow can start",
            heads=list(heads),
        )
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` when it was never migrated."""
    with engine.connect() as conn:
        conn.execution_options(**{READ_ONLY_OPTION: True})
        return _revision_of(conn)


def upgrade_to_head(engine: Engine, *, script_location: str | Path | None = None) -> str:
    """Apply all pending migrations and return the head revision.

    Safe to call on every start: it does nothing when the database is current.
    """
    cfg = alembic_config(script_location)
    script = ScriptDirectory.from_config(cfg)
    head = head_revision(script_location)
    if _check_known(script, current_revision(engine), head) == head:
        return head
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:  # a table rebuild drops the old table: its children's keys are checked at the end
            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys = OFF")
        try:
            with conn.begin():
                if not sqlite:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                 {"key": PG_MIGRATION_LOCK_KEY})
                # Re-read under the lock: another process may have migrated meanwhile.
                if _check_known(script, _revision_of(conn), head) != head:
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
                    if sqlite:
                        _check_foreign_keys(conn)
        finally:
            if sqlite:
                conn.connection.dbapi_connection.execute("PRAGMA foreign_keys = ON")
    return head


def _check_foreign_keys(conn: Connection) -> None:
    """Every foreign key must still hold after SQLite migrated with the checks off."""
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise SchemaVersionError(
            f"migrating would break {len(broken)} foreign key(s) (first: {tuple(broken[0])}); "
            "nothing was changed", broken=len(broken),
        )


def _revision_of(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _check_known(script: ScriptDirectory, revision: str | None, head: str) -> str | None:
    """Refuse a revision these migrations do not contain (a newer FinFlow wrote it)."""
    if revision is None:
        return None
    try:
        found = script.get_revision(revision)
    except (CommandError, RevisionError):
        found = None
    if found is None:
        raise SchemaVersionError(
            f"the database is at schema revision {revision!r}, which this FinFlow does not know "
            f"(newest known: {head!r}); it was probably written by a newer FinFlow. Upgrade "
            "FinFlow, or point FINFLOW_DATABASE_URL at another database. Nothing was changed.",
            revision=revision,
            head=head,
        )
    return revision
