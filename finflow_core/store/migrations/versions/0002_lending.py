"""Lending record: model versions, strategies, batches, applications, scores, decisions,
claims, quarantine and drift runs.

Revision ID: 0002_lending
Revises: 0001_foundation
Create Date: 2026-11-28

Written out in full on purpose (a migration is a frozen snapshot);
``finflow_core/store/lending_tables.py`` must describe the same schema. Decisions are made
append-only by database triggers, as the audit log is.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_lending"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = 32


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.String(TS), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="candidate"),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("training_data_sha256", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("folder", sa.Text, nullable=False),
        sa.Column("card", sa.Text, nullable=False),
        _ts("created_at", False),
        sa.Column("trained_by", sa.String(64), nullable=False),
        _ts("promoted_at"),
        sa.Column("promoted_by", sa.String(64)),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_model_versions")),
        sa.CheckConstraint("status IN ('candidate', 'champion', 'retired')",
                           name=op.f("ck_model_versions_status_known")),
    )
    op.create_index("uq_model_versions_one_champion", "model_versions", ["status"], unique=True,
                    sqlite_where=sa.text("status = 'champion'"),
                    postgresql_where=sa.text("status = 'champion'"))

    op.create_table(
        "strategies",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("low_edge", sa.Float, nullable=False),
        sa.Column("high_edge", sa.Float, nullable=False),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        _ts("saved_at", False),
        sa.Column("saved_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strategies")),
        sa.ForeignKeyConstraint(["model_version"], ["model_versions.version"],
                                name=op.f("fk_strategies_model_version_model_versions")),
        sa.CheckConstraint("low_edge >= 0 AND low_edge <= high_edge", name=op.f("ck_strategies_edges_ordered")),
    )
    op.create_index("ix_strategies_model_version", "strategies", ["model_version", "id"])

    op.create_table(
        "batches",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("uploaded_by", sa.String(64), nullable=False),
        _ts("uploaded_at", False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("low_edge", sa.Float, nullable=False),
        sa.Column("high_edge", sa.Float, nullable=False),
        sa.Column("week_start", sa.String(10), nullable=False),
        *[sa.Column(n, sa.Integer, nullable=False) for n in (
            "rows_in", "rows_valid", "rows_quarantined", "n_low", "n_medium", "n_high")],
        sa.Column("automation_rate", sa.Float, nullable=False),
        sa.Column("expected_profit", sa.Float, nullable=False),
        sa.Column("drift_status", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
        sa.UniqueConstraint("sha256", name=op.f("uq_batches_sha256")),
        sa.ForeignKeyConstraint(["model_version"], ["model_versions.version"],
                                name=op.f("fk_batches_model_version_model_versions")),
        sa.CheckConstraint("rows_in = rows_valid + rows_quarantined", name=op.f("ck_batches_rows_add_up")),
    )
    op.create_index("ix_batches_uploaded_at", "batches", ["uploaded_at"])

    op.create_table(
        "applications",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("external_id", sa.String(128), nullable=False),
        sa.Column("week_start", sa.String(10), nullable=False),
        sa.Column("amount", sa.Float, nullable=False),
        sa.Column("segment_1", sa.String(64)),
        sa.Column("segment_2", sa.String(64)),
        sa.Column("segment_3", sa.String(64)),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("band", sa.String(8), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("expected_profit", sa.Float, nullable=False),
        sa.Column("decided_kind", sa.String(8)),
        sa.Column("current_decision_id", sa.Integer),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_applications")),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], name=op.f("fk_applications_batch_id_batches")),
        sa.UniqueConstraint("batch_id", "row_number", name=op.f("uq_applications_batch_id_row_number")),
        sa.CheckConstraint("band IN ('low', 'medium', 'high')", name=op.f("ck_applications_band_known")),
        sa.CheckConstraint("status IN ('approved', 'declined', 'pending', 'referred')",
                           name=op.f("ck_applications_status_known")),
    )
    op.create_index("ix_applications_external_id", "applications", ["external_id"])
    op.create_index("ix_applications_queue", "applications", ["status", "id"])
    op.create_index("ix_applications_queue_amount", "applications", ["status", "amount", "id"])

    op.create_table(
        "scores",
        sa.Column("application_id", sa.Integer, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("band", sa.String(8), nullable=False),
        sa.Column("ev_approve", sa.Float, nullable=False),
        sa.Column("ev_review", sa.Float, nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        _ts("scored_at", False),
        sa.PrimaryKeyConstraint("application_id", name=op.f("pk_scores")),
        sa.ForeignKeyConstraint(["application_id"], ["applications.id"],
                                name=op.f("fk_scores_application_id_applications")),
        sa.ForeignKeyConstraint(["model_version"], ["model_versions.version"],
                                name=op.f("fk_scores_model_version_model_versions")),
    )

    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("application_id", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("decided_by", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        _ts("decided_at", False),
        sa.Column("model_version", sa.String(64)),
        sa.Column("supersedes_id", sa.Integer),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
        sa.ForeignKeyConstraint(["application_id"], ["applications.id"],
                                name=op.f("fk_decisions_application_id_applications")),
        sa.ForeignKeyConstraint(["supersedes_id"], ["decisions.id"],
                                name=op.f("fk_decisions_supersedes_id_decisions")),
        sa.UniqueConstraint("supersedes_id", name=op.f("uq_decisions_supersedes_id")),
        sa.CheckConstraint("outcome IN ('approve', 'decline', 'refer')", name=op.f("ck_decisions_outcome_known")),
        sa.CheckConstraint("kind IN ('auto', 'manual')", name=op.f("ck_decisions_kind_known")),
    )
    op.create_index("uq_decisions_first_per_application", "decisions", ["application_id"], unique=True,
                    sqlite_where=sa.text("supersedes_id IS NULL"),
                    postgresql_where=sa.text("supersedes_id IS NULL"))
    op.create_index("ix_decisions_application", "decisions", ["application_id", "id"])

    op.create_table(
        "claims",
        sa.Column("application_id", sa.Integer, nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=False),
        _ts("claimed_at", False),
        _ts("expires_at", False),
        sa.PrimaryKeyConstraint("application_id", name=op.f("pk_claims")),
        sa.ForeignKeyConstraint(["application_id"], ["applications.id"],
                                name=op.f("fk_claims_application_id_applications")),
    )

    op.create_table(
        "quarantine_rows",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("line", sa.Integer, nullable=False),
        sa.Column("external_id", sa.String(255)),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine_rows")),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], name=op.f("fk_quarantine_rows_batch_id_batches")),
        sa.UniqueConstraint("batch_id", "row_number", name=op.f("uq_quarantine_rows_batch_id_row_number")),
    )

    op.create_table(
        "quarantine_issues",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("column_name", sa.String(128), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("value", sa.Text),
        sa.Column("message", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine_issues")),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], name=op.f("fk_quarantine_issues_batch_id_batches")),
    )
    op.create_index("ix_quarantine_issues_batch", "quarantine_issues", ["batch_id", "row_number"])

    op.create_table(
        "drift_runs",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("score_psi", sa.Float),
        sa.Column("psi", sa.Text, nullable=False),
        sa.Column("counts", sa.Text, nullable=False),
        _ts("computed_at", False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_runs")),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], name=op.f("fk_drift_runs_batch_id_batches")),
        sa.ForeignKeyConstraint(["model_version"], ["model_versions.version"],
                                name=op.f("fk_drift_runs_model_version_model_versions")),
        sa.UniqueConstraint("batch_id", name=op.f("uq_drift_runs_batch_id")),
    )
    segments = [sa.Column(f"segment_{i}", sa.String(64), nullable=False) for i in (1, 2, 3)]
    op.create_table(
        "portfolio_rollup",
        sa.Column("week_start", sa.String(10), nullable=False),
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("band", sa.String(8), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        *segments,
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("amount", sa.Float, nullable=False),
        sa.Column("expected_profit", sa.Float, nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], name=op.f("fk_portfolio_rollup_batch_id_batches")),
        sa.UniqueConstraint("week_start", "batch_id", "band", "status", "kind", "segment_1", "segment_2",
                            "segment_3", name="uq_portfolio_rollup_key"),
    )
    op.create_table(
        "probability_rollup",
        sa.Column("week_start", sa.String(10), nullable=False),
        sa.Column("batch_id", sa.String(32), nullable=False),
        *[sa.Column(f"segment_{i}", sa.String(64), nullable=False) for i in (1, 2, 3)],
        sa.Column("bin", sa.Integer, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"],
                                name=op.f("fk_probability_rollup_batch_id_batches")),
        sa.UniqueConstraint("week_start", "batch_id", "segment_1", "segment_2", "segment_3", "bin",
                            name="uq_probability_rollup_key"),
    )
    _decision_guards()


def _decision_guards() -> None:
    """Decisions are never overwritten or removed: a change is a new, superseding record."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER IF NOT EXISTS decisions_no_{verb.lower()} BEFORE {verb} ON decisions "
                f"BEGIN SELECT RAISE(ABORT, 'decisions are append-only: {verb} refused'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION finflow_decisions_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION USING MESSAGE = "
            "'decisions are append-only: ' || TG_OP || ' refused'; END $$"
        )
        op.execute(
            "CREATE TRIGGER decisions_append_only BEFORE UPDATE OR DELETE ON decisions "
            "FOR EACH ROW EXECUTE FUNCTION finflow_decisions_append_only()"
        )
        op.execute(
            "CREATE TRIGGER decisions_no_truncate BEFORE TRUNCATE ON decisions "
            "FOR EACH STATEMENT EXECUTE FUNCTION finflow_decisions_append_only()"
        )


def downgrade() -> None:
    raise NotImplementedError(
        "FinFlow never downgrades a database (it would delete the lending record): restore a backup"
    )
