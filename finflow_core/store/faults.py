"""What can go wrong with the database file or server, as one message and an exit code each.

The driver's errors ("database is locked", "database or disk is full", "file is not a
database", "attempt to write a readonly database", a refused connection) are turned into
:class:`StoreFault` subclasses by :func:`translate`, so a person reads what happened and
what to do, never a traceback. Constraint violations (IntegrityError) are left alone: the
services handle those races themselves.
"""

from __future__ import annotations

import errno
import sqlite3
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError

from finflow_core.errors import FinFlowError


class StoreFault(FinFlowError):
    """The database cannot be used as asked."""

    exit_code = 1


class StoreBusy(StoreFault):
    """Another process held the database's write lock for longer than the busy timeout."""

    exit_code = 14


class StoreFull(StoreFault):
    """The disk (or the database's quota) is full."""

    exit_code = 15


class StoreNotWritable(StoreFault):
    """The database, its folder or an output folder cannot be written (or opened)."""

    exit_code = 16


class StoreDamaged(StoreFault):
    """Not a database, truncated, failing its integrity check, or missing where one was."""

    exit_code = 17


class NotAvailableHere(FinFlowError):
    """The command does not apply to this database (a PostgreSQL backup: use pg_dump)."""

    exit_code = 18


_SQLITE = (
    (("database is locked", "database table is locked"), StoreBusy,
     "the database {where} stayed locked by another FinFlow process for longer than the busy "
     "timeout ({seconds:.0f} s); wait for it to finish (see `finflow batches list`) and try again"),
    (("database or disk is full",), StoreFull,
     "the disk holding the database {where} is full: nothing of this step was stored; free "
     "some space (or move the data folder) and try again"),
    (("disk i/o error",), StoreFull,
     "the database {where} could not be written (disk I/O error: the disk may be full, "
     "removed or failing); nothing of this step was stored"),
    (("readonly database", "read-only", "unable to open database file"), StoreNotWritable,
     "the database {where}, its -wal and -shm files or its folder cannot be written by this "
     "user (read-only home or data folder?): make them writable, or point FINFLOW_HOME / "
     "FINFLOW_DATABASE_URL at a folder that is"),
    (("file is not a database", "malformed", "file is encrypted"), StoreDamaged,
     "{where} is not a FinFlow database or is damaged (truncated or overwritten): restore it "
     "with `finflow restore --from BACKUP`"),
)

_POSTGRES = (
    (("no space left", "could not extend file", "disk full"), StoreFull,
     "the database server {where} has no space left: nothing of this step was stored; ask its "
     "administrator to free some, then try again"),
    (("connection refused", "could not connect", "could not translate host name",
      "connection to server", "server closed the connection"), StoreNotWritable,
     "cannot reach the database server {where}: is it running, and is FINFLOW_DATABASE_URL "
     "right?"),
    (("lock timeout", "deadlock detected", "could not obtain lock"), StoreBusy,
     "the database {where} stayed busy (another transaction held a lock); try again"),
    (("read-only transaction", "read only"), StoreNotWritable,
     "the database server {where} refuses writes (a read-only replica or role?)"),
    (("permission denied",), StoreNotWritable,
     "the database user has no permission for this in {where}"),
)


def translate(exc: BaseException, where: str = "", busy_seconds: float = 30.0) -> FinFlowError | None:
    """The person-readable fault behind a driver error, or None if it is not one of ours."""
    if isinstance(exc, FinFlowError):
        return exc
    if isinstance(exc, IntegrityError):
        return None
    if isinstance(exc, OSError):
        return _os_fault(exc, where)
    if isinstance(exc, sqlite3.Error):  # raised bare where SQLAlchemy does not wrap it: the
        text, rules = str(exc).lower(), _SQLITE  # BEGIN IMMEDIATE of a writer (engine.py)
    elif isinstance(exc, DBAPIError):
        text = str(getattr(exc, "orig", exc)).lower()
        rules = _SQLITE if _is_sqlite(exc) else _POSTGRES
    else:
        return None
    for needles, kind, message in rules:
        if any(n in text for n in needles):
            shown = f"({where})" if where else ""
            words = " ".join(message.format(where=shown, seconds=busy_seconds).split())
            return kind(words.replace(" ,", ","), cause=text[:300])
    return None


def _is_sqlite(exc: DBAPIError) -> bool:
    return type(getattr(exc, "orig", None)).__module__.startswith("sqlite3")


def _os_fault(exc: OSError, where: str) -> FinFlowError | None:
    name = exc.filename or where
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return StoreFull(f"the disk is full while writing {name}: free some space and try again",
                         path=str(name))
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StoreNotWritable(f"cannot write {name}: permission denied or a read-only file "
                                "system; make it writable or choose another place", path=str(name))
    return None


def fault_details(exc: BaseException) -> dict[str, Any]:
    """A fault's details for --json output."""
    return exc.to_dict() if isinstance(exc, FinFlowError) else {"error": type(exc).__name__}
