"""The batch lifecycle: loading, published and voided batches; unpriced figures; period drift.

Revision ID: 0004_batch_lifecycle
Revises: 0003_drift_status_width
Create Date: 2026-12-02

* ``batches.state``: a batch is written chunk by chunk in short transactions while it is
  ``loading`` (invisible to every read), then ``published`` in one; a dead loader's rows
  are removed while ``aborting``; a manager may void a published batch (``voided``: kept
  in the history, out of the queue and the portfolio). The loader's pid, host and
  heartbeat tell a live load from an abandoned one.
* one *live* batch per file: ``sha256`` is unique only among loading, aborting and
  published batches, so a voided file can be run again (under a new batch id).
* ``origin`` (file or form), the config hash that made the batch, its drift counts.
* expected profit and the strategy's values are NULL when nothing is priced.
* drift runs are per batch or per period (the week's typed-in applications).
* the queue's amount index covers open cases only (an index over every application keyed
  by amount takes random inserts: storing a million rows was 4-5x slower with it).
* decisions stay append-only, except that the rows of a load being aborted (never
  published, never audited) may be deleted.

SQLite cannot drop NOT NULL in place; for the two large tables (applications, scores)
the documented ``writable_schema`` procedure removes the constraint without copying a
row; the small tables are rebuilt (foreign keys are switched off while migrating, see
``migrate.upgrade_to_head``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_batch_lifecycle"
down_revision: str | Sequence[str] | None = "0003_drift_status_width"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = 32
LIVE = "state IN ('loading', 'aborting', 'published')"
OPEN = "status IN ('pending', 'referred')"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("state", sa.String(10), nullable=False, server_default="published"))
        batch.add_column(sa.Column("origin", sa.String(8), nullable=False, server_default="file"))
        batch.add_column(sa.Column("config_sha256", sa.String(64)))
        batch.add_column(sa.Column("loader_pid", sa.Integer))
        batch.add_column(sa.Column("loader_host", sa.String(255)))
        batch.add_column(sa.Column("heartbeat_at", sa.String(TS)))
        batch.add_column(sa.Column("rows_written", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("published_at", sa.String(TS)))
        batch.add_column(sa.Column("voided_at", sa.String(TS)))
        batch.add_column(sa.Column("voided_by", sa.String(64)))
        batch.add_column(sa.Column("void_reason", sa.Text))
        batch.add_column(sa.Column("drift_counts", sa.Text))
        batch.alter_column("expected_profit", existing_type=sa.Float, nullable=True)
        batch.drop_constraint("uq_batches_sha256", type_="unique")
        batch.create_check_constraint(
            "state_known", "state IN ('loading', 'aborting', 'published', 'voided')")
        batch.create_check_constraint("origin_known", "origin IN ('file', 'form')")
    op.create_index("ix_batches_sha256", "batches", ["sha256"])
    op.create_index("uq_batches_live_sha256", "batches", ["sha256"], unique=True,
                    sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE))

    with op.batch_alter_table("drift_runs") as batch:
        batch.add_column(sa.Column("kind", sa.String(8), nullable=False, server_default="batch"))
        batch.add_column(sa.Column("period_start", sa.String(10)))
        batch.add_column(sa.Column("rows", sa.Integer))
        batch.alter_column("batch_id", existing_type=sa.String(32), nullable=True)
        batch.create_check_constraint("kind_known", "kind IN ('batch', 'period')")
    op.create_index("uq_drift_runs_period", "drift_runs", ["period_start", "model_version"],
                    unique=True, sqlite_where=sa.text("kind = 'period'"),
                    postgresql_where=sa.text("kind = 'period'"))

    with op.batch_alter_table("portfolio_rollup") as batch:
        batch.alter_column("expected_profit", existing_type=sa.Float, nullable=True)

    if dialect == "sqlite":
        _sqlite_drop_not_null({"applications": ["expected_profit"],
                               "scores": ["ev_approve", "ev_review"]})
    else:
        op.alter_column("applications", "expected_profit", existing_type=sa.Float, nullable=True)
        op.alter_column("scores", "ev_approve", existing_type=sa.Float, nullable=True)
        op.alter_column("scores", "ev_review", existing_type=sa.Float, nullable=True)
    op.drop_index("ix_applications_queue_amount", table_name="applications")
    op.create_index("ix_applications_queue_amount", "applications", ["status", "amount", "id"],
                    sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN))
    _decision_guards(dialect)


def _sqlite_drop_not_null(columns: dict[str, list[str]]) -> None:
    """SQLite's documented procedure for removing NOT NULL constraints: edit the stored
    CREATE TABLE text, bump the schema version, check integrity (no row is copied)."""
    conn = op.get_bind()
    version = int(conn.exec_driver_sql("PRAGMA schema_version").scalar_one())
    conn.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        for table, names in columns.items():
            sql = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' "
                                       "AND name = :t"), {"t": table}).scalar_one()
            for name in names:
                sql, n = re.subn(rf"(\b{name}\s+FLOAT)\s+NOT NULL", r"\1", sql, flags=re.I)
                if n != 1:
                    raise RuntimeError(f"cannot find the NOT NULL of {table}.{name} to drop")
            conn.execute(sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' "
                                 "AND name = :t"), {"sql": sql, "t": table})
        conn.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
    finally:
        conn.exec_driver_sql("PRAGMA writable_schema = OFF")
    problems = conn.exec_driver_sql("PRAGMA quick_check").scalars().all()
    if problems != ["ok"]:
        raise RuntimeError(f"integrity check failed after dropping NOT NULL: {problems[:3]}")


_SQLITE_ABORTING = (
    "EXISTS (SELECT 1 FROM applications a JOIN batches b ON b.id = a.batch_id "
    "WHERE a.id = OLD.application_id AND b.state = 'aborting')"
)


def _decision_guards(dialect: str) -> None:
    """Decisions stay append-only; only the rows of an aborted (never published) load may go."""
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS decisions_no_delete")
        op.execute(
            "CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions "
            f"WHEN NOT {_SQLITE_ABORTING} "
            "BEGIN SELECT RAISE(ABORT, 'decisions are append-only: DELETE refused'); END"
        )
    elif dialect == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION finflow_decisions_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            "IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM applications a JOIN batches b "
            "ON b.id = a.batch_id WHERE a.id = OLD.application_id AND b.state = 'aborting') "
            "THEN RETURN OLD; END IF; "
            "RAISE EXCEPTION USING MESSAGE = 'decisions are append-only: ' || TG_OP || ' refused'; "
            "END $$"
        )


def downgrade() -> None:
    raise NotImplementedError(
        "FinFlow never downgrades a database (it would delete the lending record): restore a backup"
    )
