"""FinFlow's database tables: one SQLAlchemy Core ``MetaData`` shared by every module.

Schema changes go through Alembic migrations in ``finflow_core/store/migrations/versions``;
this file must always describe the schema at the newest migration (a test compares them).

Conventions, chosen so the same code runs on SQLite and PostgreSQL:

* timestamps are fixed-width ISO-8601 UTC text with microseconds
  (``2024-05-01T12:00:00.123456+00:00``, see :func:`iso_utc`): they sort and compare as
  strings on every backend and never lose their time zone;
* constraint names follow :data:`NAMING_CONVENTION`, so Alembic's batch mode (SQLite
  table rebuilds) can find and recreate them;
* lists of roles are stored as sorted comma-separated text (``"admin,analyst"``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
    true,
)

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Execution option set on read connections; the SQLite "begin" hook of the engine reads it.
READ_ONLY_OPTION = "finflow_read_only"

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: Width of an :func:`iso_utc` timestamp.
TIMESTAMP_LEN = 32
#: The ``prev_hash`` of the first audit entry.
GENESIS_HASH = "0" * 64

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time, aware, in UTC (the default clock of every store function)."""
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """Render a timestamp as fixed-width UTC text; a naive datetime is taken to be UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_utc(value: str) -> datetime:
    """Inverse of :func:`iso_utc` (also accepts dates and other ISO-8601 forms)."""
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _timestamp(name: str, *, nullable: bool = True) -> Column[str]:
    return Column(name, String(TIMESTAMP_LEN), nullable=nullable)


# -- users and sign-in ----------------------------------------------------------------------

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    # scrypt$N$r$p$<salt b64>$<hash b64>; never returned by any read function.
    Column("password_hash", String(255), nullable=False),
    Column("roles", String(200), nullable=False),
    Column("active", Boolean, nullable=False, server_default=true()),
    _timestamp("created_at", nullable=False),
    Column("created_by", String(64), nullable=True),
    _timestamp("password_changed_at"),
    _timestamp("last_login_at"),
    # Login throttling: consecutive failures and the time before which sign-in is refused.
    Column("failed_logins", Integer, nullable=False, server_default=text("0")),
    _timestamp("locked_until"),
    # Lending authority: the amount this officer may commit alone (NULL: not set).
    Column("lending_limit", Float, nullable=True),
    # keyed MAC of who the user is and may do (finflow_core.store.seals); not of throttling
    Column("seal", String(32)),
    CheckConstraint("failed_logins >= 0", name="failed_logins_not_negative"),
)

#: At most one live row: the one-time code that lets the first admin be created.
setup_codes = Table(
    "setup_codes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("code_hash", String(255), nullable=False),
    _timestamp("created_at", nullable=False),
    _timestamp("expires_at", nullable=False),
    _timestamp("used_at"),
    Column("failed_attempts", Integer, nullable=False, server_default=text("0")),
    _timestamp("locked_until"),
)

#: Signed-in browsers (see finflow_core.store.sign_in): the browser holds a random token in an
#: HttpOnly cookie; only its SHA-256 is stored. A one-time hand-over code (also hashed) lets
#: the browser fetch that cookie once, right after sign-in.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=True, unique=True),
    Column("handoff_hash", String(64), nullable=True, unique=True),
    _timestamp("handoff_expires_at"),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    # what the account looked like at sign-in: a changed password or role ends the session
    Column("password_stamp", String(64), nullable=False),
    Column("roles", String(200), nullable=False),
    _timestamp("created_at", nullable=False),
    _timestamp("last_seen_at", nullable=False),
    _timestamp("expires_at", nullable=False),
    _timestamp("revoked_at"),
    Column("revoked_reason", String(32), nullable=True),
    Index("ix_web_sessions_user_id", "user_id"),
)

#: Failed sign-ins under names that are no user: throttled exactly like a user's own counter,
#: so a lockout never tells which names exist.
sign_in_failures = Table(
    "sign_in_failures",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("failed_logins", Integer, nullable=False, server_default=text("0")),
    _timestamp("locked_until"),
    _timestamp("last_failed_at", nullable=False),
    Index("ix_sign_in_failures_last_failed_at", "last_failed_at"),
)

# -- audit trail ----------------------------------------------------------------------------

#: Append-only (database triggers refuse UPDATE and DELETE); keyed hash chain, see
#: finflow_core.store.chain_hash.
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    _timestamp("at", nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject_type", String(64), nullable=False),
    Column("subject_id", String(255), nullable=False),
    Column("model_version", String(128), nullable=True),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_log_subject", "subject_type", "subject_id"),
    Index("ix_audit_log_actor", "actor"),
    Index("ix_audit_log_at", "at"),
)

#: Exactly one row (id = 1): the last seq and hash. Locking it serialises appends on
#: PostgreSQL; comparing it with the log's tail detects a truncated log.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
    # which installation key the chain is keyed with (its fingerprint; NULL before keying)
    Column("key_fingerprint", String(16)),
    CheckConstraint("id = 1", name="single_row"),
)
