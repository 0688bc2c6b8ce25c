"""The database engine and :class:`Store`, the handle every FinFlow module uses.

SQLite (the embedded default) gets WAL, foreign keys, a busy timeout and NORMAL sync on
every new connection. Python 3.11's ``sqlite3`` starts transactions lazily and only before
writes, so a transaction that reads and then writes can fail with "database is locked"
when it tries to upgrade its lock. We therefore switch the driver's own transaction handling
off (``isolation_level = None``) and emit ``BEGIN IMMEDIATE`` ourselves: a write transaction
takes SQLite's single write lock up front and waits (``busy_timeout``) for it instead of
failing half-way. Read connections (:meth:`Store.connect`) use a plain deferred ``BEGIN``
plus ``PRAGMA query_only`` so they never block writers and cannot write by mistake.

SQLite's own wait for the lock is not fair: a waiter polls every 100 ms once it has waited a
while, so a writer that commits and begins again at once (a batch written chunk by chunk)
could starve a sign-in indefinitely. FinFlow's writers therefore poll ``BEGIN IMMEDIATE``
themselves every few milliseconds, and a long writer pauses briefly between its
transactions (:meth:`Store.yield_to_others`): a waiting writer gets in after at most one
chunk. Giving up after ``SQLITE_BUSY_TIMEOUT_MS`` (the whole wait, from the first try) is
:class:`~finflow_core.store.faults.StoreBusy`.

A database file is created ``0600`` in a ``0700`` folder. Before the first write of each
:class:`Store`, SQLite's ``PRAGMA quick_check`` must pass: a damaged file is refused for
writes (reads still work, so its contents can be exported). Driver errors become
:mod:`~finflow_core.store.faults` (one message, a documented exit code).

Any other SQLAlchemy URL (``postgresql+psycopg://...``) works the same way through
:func:`open_store`; there, read connections are ``READ ONLY`` transactions.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry

from finflow_core.store.faults import StoreBusy, StoreDamaged, StoreNotWritable, translate
from finflow_core.store.tables import READ_ONLY_OPTION

#: How long a SQLite writer waits for the write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: How often a waiting writer tries for the lock, at most (seconds).
LOCK_POLL_SECONDS = 0.004
#: How long a long writer (a batch load) pauses between its transactions on SQLite.
YIELD_SECONDS = 0.012
#: Execution option of a batch load's write transactions (see :meth:`Store.begin`).
BULK_OPTION = "finflow_bulk_load"
#: SQLite page cache of a connection while it loads a batch, KiB (the default is 2,000): the
#: right-hand pages of five growing indexes stay in memory (1M rows stored 8% faster).
BULK_CACHE_KIB = 65_536
#: WAL pages after which a loading connection's commit checkpoints (SQLite's default is
#: 1,000): each checkpoint copies the indexes' hot pages again and syncs the file, and at a
#: million rows the commits took 13 s of a 63 s load; at 10,000 (a 40 MB WAL) they take 8 s.
BULK_AUTOCHECKPOINT_PAGES = 10_000
#: SQLite's defaults, restored when a connection that loaded serves another writer.
DEFAULT_CACHE_KIB = 2_000
DEFAULT_AUTOCHECKPOINT_PAGES = 1_000
SQLITE_MAGIC = b"SQLite format 3\x00"


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
    if read_only:
        conn.exec_driver_sql("BEGIN")
        return
    bulk = bool(conn.get_execution_options().get(BULK_OPTION, False))
    if info.get("bulk", False) != bulk:  # a load's settings, or back to the defaults
        cache, pages = ((BULK_CACHE_KIB, BULK_AUTOCHECKPOINT_PAGES) if bulk
                        else (DEFAULT_CACHE_KIB, DEFAULT_AUTOCHECKPOINT_PAGES))
        conn.exec_driver_sql(f"PRAGMA cache_size = -{cache}")
        conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint = {pages}")
        info["bulk"] = bulk
    _begin_immediate(conn.connection.dbapi_connection)


def _begin_immediate(raw: Any) -> None:
    """Take the write lock, trying every few milliseconds (see the module docstring).

    The whole wait is ``SQLITE_BUSY_TIMEOUT_MS`` from the first try. SQLite's own busy
    handler is off while we try (left on, the first ``BEGIN IMMEDIATE`` alone waited the
    full timeout in SQLite's slow polling, and our polling then waited it a second time:
    about 60 s instead of 30 before giving up); other statements keep the busy timeout.
    """
    timeout = SQLITE_BUSY_TIMEOUT_MS / 1000
    deadline = time.monotonic() + timeout
    delay = 0.0005
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_locked(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise StoreBusy(
                        f"the database stayed locked by another FinFlow process for more than "
                        f"{timeout:.0f} s; wait for it to finish (see `finflow batches list`) "
                        "and try again", cause=str(exc)) from None
            time.sleep(delay)
            delay = min(delay * 2, LOCK_POLL_SECONDS)
    finally:
        raw.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a SQLite URL (None for other databases, memory and URI filenames)."""
    parsed = normalise_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        return None  # URI filenames: the caller owns them
    return Path(database).expanduser()


def check_sqlite_file(path: Path, prior_use: Iterable[Path] = ()) -> None:
    """Refuse a database file that cannot be FinFlow's before anything opens it.

    A missing or zero-length file is a fresh installation only if nothing says this
    installation was used before (``prior_use``: its key, models, anchors): otherwise the
    real database was lost or truncated, and starting an empty one would hand the first
    ``users add`` an admin account. A file that is not SQLite, or shorter than its own
    header says, is damaged.
    """
    evidence = [str(p) for p in prior_use if p.exists()]
    if not path.exists() or path.stat().st_size == 0:
        if evidence:
            state = "missing" if not path.exists() else "empty (0 bytes)"
            raise StoreDamaged(
                f"the database {path} is {state}, but this installation was used before "
                f"({', '.join(evidence[:3])} exist): FinFlow will not start a new, empty "
                "database in its place. Restore it with `finflow restore --from BACKUP`; to "
                "really start afresh, move those files away first.",
                path=str(path), reason=state.split()[0])
        return
    try:
        with open(path, "rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        raise StoreNotWritable(f"cannot read the database {path}: {exc.strerror}",
                               path=str(path)) from None
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise StoreDamaged(f"{path} is not a SQLite database (it holds something else, or was "
                           "overwritten): restore it with `finflow restore --from BACKUP`",
                           path=str(path), reason="not_a_database")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    header_valid = header[24:28] == header[92:96]  # the page count is current
    size = path.stat().st_size
    wal = Path(f"{path}-wal")
    # with a write-ahead log the file may lag its header (a checkpoint cut short): SQLite
    # completes it from the log, and quick_check judges the result before any write
    pending_log = wal.exists() and wal.stat().st_size > 0
    if header_valid and pages and size < pages * page_size and not pending_log:
        raise StoreDamaged(
            f"the database {path} is truncated ({size:,} bytes, its header says "
            f"{pages * page_size:,}): restore it with `finflow restore --from BACKUP`",
            path=str(path), reason="truncated")


def ensure_sqlite_file(path: Path) -> None:
    """A fresh database file: 0600 in a 0700 folder (created if missing)."""
    folder = path.parent
    if not folder.exists():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return  # another process made it first
        os.close(fd)


class Store:
    """A database handle: ``begin()`` for a write transaction, ``connect()`` for reads.

    Shared by all threads (it wraps a pooled engine); never share a Connection between
    threads. Close it with :meth:`close` or use it as a context manager.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._checked = engine.dialect.name != "sqlite"  # PostgreSQL checks its own pages
        self._check_lock = threading.Lock()

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"`` (or another backend name)."""
        return self.engine.dialect.name

    @property
    def url(self) -> str:
        """The database URL with any password masked: safe to log and display."""
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def begin(self, *, bulk: bool = False) -> Iterator[Connection]:
        """A write transaction: commits when the block ends, rolls back on an exception.

        On SQLite it holds the database's write lock from the start, so keep it short.
        ``bulk``: one of a batch load's transactions (SQLite gives its connection a larger
        page cache and checkpoints its WAL less often). Driver errors come out as
        :mod:`~finflow_core.store.faults`.
        """
        if not self._checked:
            self.check_integrity()
        try:
            with self.engine.connect() as conn:
                if bulk:
                    conn.execution_options(**{BULK_OPTION: True})
                with conn.begin():
                    yield conn
        except DBAPIError as exc:
            raise self._fault(exc) from None

    def _fault(self, exc: DBAPIError) -> BaseException:
        fault = translate(exc, self.url, SQLITE_BUSY_TIMEOUT_MS / 1000)
        return exc if fault is None else fault

    def check_integrity(self) -> None:
        """SQLite's ``PRAGMA quick_check``, once per Store: a damaged file is refused for writes."""
        with self._check_lock:
            if self._checked:
                return
            try:
                with self.engine.connect() as conn:
                    conn.execution_options(**{READ_ONLY_OPTION: True})
                    found = list(conn.exec_driver_sql("PRAGMA quick_check(5)").scalars())
            except DBAPIError as exc:
                raise self._fault(exc) from None
            if found != ["ok"]:
                raise StoreDamaged(
                    f"the database {self.url} failed its integrity check ({'; '.join(found)[:300]}): "
                    "FinFlow refuses to write to it. Export what you need (reads still work), "
                    "then restore a backup with `finflow restore --from BACKUP`",
                    problems=found)
            self._checked = True

    def checkpoint(self) -> tuple[int, int] | None:
        """Copy SQLite's WAL into the database file now (PASSIVE: never waits for or blocks
        anyone). A batch load checkpoints rarely (:data:`BULK_AUTOCHECKPOINT_PAGES`); doing
        the rest when it is published keeps that work off the next user's commit. A
        checkpoint that cannot finish loses nothing (the WAL keeps every page), so a failure
        here is left for SQLite's next automatic checkpoint. Returns the WAL's frames and how
        many of them are in the database file now (None: not SQLite, or it failed)."""
        if self.dialect != "sqlite":
            return None
        raw = self.engine.raw_connection()  # outside any transaction, as SQLite requires
        try:
            row = raw.driver_connection.execute(  # type: ignore[union-attr]
                "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:
            return None
        finally:
            raw.close()
        return int(row[1]), int(row[2])

    def yield_to_others(self) -> None:
        """A long writer's pause between transactions, so waiting writers get the lock."""
        if self.dialect == "sqlite":
            time.sleep(YIELD_SECONDS)

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
            try:
                yield conn
            except DBAPIError as exc:
                raise self._fault(exc) from None

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
