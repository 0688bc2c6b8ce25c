"""Foundation: users (with sign-in throttling), the one-time setup code, the audit chain.

Revision ID: 0001_foundation
Revises:
Create Date: 2025-11-28

Also adopts a database that predates migrations (no ``alembic_version``): tables that
already exist are kept with their rows, and only missing columns and indexes are added.
Table definitions are written out here on purpose (a migration is a frozen snapshot);
``finflow_core/store/tables.py`` must describe the same schema.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import SchemaItem

revision: str = "0001_foundation"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64
TS = 32  # width of an ISO-8601 UTC timestamp with microseconds


def _users() -> list[SchemaItem]:
    return [
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("roles", sa.String(200), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", sa.String(TS), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("password_changed_at", sa.String(TS), nullable=True),
        sa.Column("last_login_at", sa.String(TS), nullable=True),
        sa.Column("failed_logins", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("locked_until", sa.String(TS), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
        sa.CheckConstraint(
            "failed_logins >= 0", name=op.f("ck_users_failed_logins_not_negative")
        ),
    ]


def _setup_codes() -> list[SchemaItem]:
    return [
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("code_hash", sa.String(255), nullable=False),
        sa.Column("created_at", sa.String(TS), nullable=False),
        sa.Column("expires_at", sa.String(TS), nullable=False),
        sa.Column("used_at", sa.String(TS), nullable=True),
        sa.Column("failed_attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("locked_until", sa.String(TS), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_setup_codes")),
    ]


def _audit_log() -> list[SchemaItem]:
    return [
        sa.Column("seq", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("at", sa.String(TS), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject_type", sa.String(64), nullable=False),
        sa.Column("subject_id", sa.String(255), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=True),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    ]


def _audit_head() -> list[SchemaItem]:
    return [
        sa.Column("id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_head_single_row")),
    ]


AUDIT_INDEXES: list[tuple[str, list[str]]] = [
    ("ix_audit_log_subject", ["subject_type", "subject_id"]),
    ("ix_audit_log_actor", ["actor"]),
    ("ix_audit_log_at", ["at"]),
]

SQLITE_GUARDS = [
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END",
]

POSTGRESQL_GUARDS = [
    "CREATE OR REPLACE FUNCTION finflow_audit_log_append_only() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION USING MESSAGE = "
    "'audit_log is append-only: ' || TG_OP || ' refused'; END $$",
    "DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log",
    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION finflow_audit_log_append_only()",
    "DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log",
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION finflow_audit_log_append_only()",
]


def upgrade() -> None:
    _ensure_table("users", _users)
    _ensure_table("setup_codes", _setup_codes)
    _ensure_table("audit_log", _audit_log, AUDIT_INDEXES)
    _ensure_table("audit_head", _audit_head)
    _init_audit_head()
    _create_audit_guards()


def downgrade() -> None:
    raise NotImplementedError(
        "FinFlow never downgrades a database (it would delete users and the audit trail): "
        "restore a backup instead"
    )


def _ensure_table(
    name: str,
    items: Callable[[], list[SchemaItem]],
    indexes: Sequence[tuple[str, list[str]]] = (),
) -> None:
    """Create the table, or add what an older (pre-migration) copy of it lacks."""
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table(name):
        op.create_table(name, *items())
        present_indexes: set[str] = set()
    else:
        present = {c["name"] for c in inspector.get_columns(name)}
        for column in (i for i in items() if isinstance(i, sa.Column)):
            if column.name in present:
                continue
            if not column.nullable and column.server_default is None:
                raise RuntimeError(
                    f"existing table {name!r} lacks required column {column.name!r}: this "
                    "database was not made by FinFlow; use a fresh database"
                )
            op.add_column(name, column)
        present_indexes = {str(ix["name"]) for ix in inspector.get_indexes(name)}
    for index_name, columns in indexes:
        if index_name not in present_indexes:
            op.create_index(op.f(index_name), name, columns)


def _init_audit_head() -> None:
    """One head row; for an adopted log it points at the log's current last entry."""
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT id FROM audit_head WHERE id = 1")).first() is not None:
        return
    last = bind.execute(
        sa.text("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    ).first()
    seq, digest = (last[0], last[1]) if last is not None else (0, GENESIS_HASH)
    bind.execute(
        sa.text("INSERT INTO audit_head (id, seq, hash) VALUES (1, :seq, :hash)"),
        {"seq": seq, "hash": digest},
    )


def _create_audit_guards() -> None:
    """Make audit_log append-only in the database itself (defence against stray code)."""
    dialect = op.get_bind().dialect.name
    statements = {"sqlite": SQLITE_GUARDS, "postgresql": POSTGRESQL_GUARDS}.get(dialect, [])
    for statement in statements:
        op.execute(statement)
