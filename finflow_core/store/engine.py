"""The database engine and :class:`Store`, the handle every FinFlow module uses.

SQLite (the embedded default) gets WAL, foreign keys, a busy timeout and NORMAL sync on
every new connection. Python 3.11's ``sqlite3`` starts transactions lazily and only before
writes, so a transaction that reads and then writes can fail with "database is locked"
when it tries to upgrade its lock. We therefore switch the driver's own transaction handling
off (``isolation_level = None``) and emit ``BEGIN IMMEDIATE`` ourselves: a write transaction
takes SQLite's single write lock up front and waits (``busy_timeout``) for it instead of
failing half-way. Read connections (:meth:`Store.connect`) use a plain deferred ``BEGIN``
plus ``PRAGMA query_only`` so they never block writers and cannot write by mistake.

Any other SQLAlchemy URL (``postgresql+psycopg://...``) works the same way through
:func:`open_store`; there, read connections are ``READ ONLY`` transactions.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry

#: How long a SQLite writer waits for the write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Execution option set on read connections; the SQLite "begin" hook reads it.
READ_ONLY_OPTION = "finflow_read_only"


def normalise_url(url: str | URL) -> URL:
    """Parse a database URL; a PostgreSQL URL without a driver gets psycopg 3 (the one installed)."""
    text = str(url) if isinstance(url, URL) else url
    if text.startswith("postgres://"):  # Heroku-style alias SQLAlchemy does not know
        text = "postgresql://" + text[len("postgres://"):]
    parsed = make_url(text)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str | URL) -> Engine:
    """Create an engine with FinFlow's connection settings (no schema changes)."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return create_engine(parsed, pool_pre_ping=True)


def _sqlite_engine(url: URL) -> Engine:
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, connection_record: ConnectionPoolEntry) -> None:
    """Per-connection settings; the driver must not issue BEGIN itself (see module doc)."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()
    connection_record.info["query_only"] = False


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL (persistent), retrying while another connection holds it.

    SQLite reports "database is locked" at once, without using the busy timeout, when
    several connections race to convert a fresh file; whoever wins converts it for all.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_on_begin(conn: Connection) -> None:
    """Writers take the write lock at BEGIN; readers get a snapshot and cannot write."""
    read_only = bool(conn.get_execution_options().get(READ_ONLY_OPTION, False))
    info = conn.connection.info
    if info.get("query_only", False) != read_only:
        conn.exec_driver_sql(f"PRAGMA query_only = {int(read_only)}")
        info["query_only"] = read_only
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _ensure_sqlite_folder(url: URL) -> None:
    """Create the folder of a SQLite file so a fresh installation starts without set-up."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return
    if database.startswith("file:"):
        return  # URI filenames: the caller owns them
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


class Store:
    """A database handle: ``begin()`` for a write transaction, ``connect()`` for reads.

    Shared by all threads (it wraps a pooled engine); never share a Connection between
    threads. Close it with :meth:`close` or use it as a context manager.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"`` (or another backend name)."""
        return self.engine.dialect.name

    @property
    def url(self) -> str:
        """The database URL with any password masked: safe to log and display."""
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction: commits when the block ends, rolls back on an exception.

        On SQLite it holds the database's write lock from the start, so keep it short.
        """
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def connect(self, *, snapshot: bool = False) -> Iterator[Connection]:
        """A read-only connection; writes through it fail.

        ``snapshot=True`` makes every statement in a transaction see the same data (needed
        when several queries must agree, e.g. verifying the audit chain). SQLite read
        transactions in WAL mode are snapshots already; on PostgreSQL this asks for
        REPEATABLE READ.
        """
        with self.engine.connect() as conn:
            options: dict[str, Any] = {READ_ONLY_OPTION: True}
            if self.dialect == "postgresql":
                options["postgresql_readonly"] = True
                if snapshot:
                    options["isolation_level"] = "REPEATABLE READ"
            conn.execution_options(**options)
            yield conn

    def revision(self) -> str | None:
        """The Alembic revision the database is at (``None`` for an unversioned database)."""
        from finflow_core.store.migrate import current_revision

        return current_revision(self.engine)

    def close(self) -> None:
        """Close all pooled connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"


def open_store(url: str | URL, *, upgrade: bool = True) -> Store:
    """Open the database at ``url`` and bring its schema up to date.

    Creates a SQLite file's folder if needed; with ``upgrade`` (the default) applies any
    pending migrations. Migrations only ever add; nothing is dropped. A database written
    by a newer FinFlow is refused (:class:`~finflow_core.store.migrate.SchemaVersionError`).
    """
    from finflow_core.store.migrate import upgrade_to_head

    parsed = normalise_url(url)
    _ensure_sqlite_folder(parsed)
    engine = make_engine(parsed)
    try:
        if upgrade:
            upgrade_to_head(engine)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine)
