"""Model lifecycle: outcomes and their files, experiments, arms, shadow scores, promotion notes.

Revision ID: 0008_lifecycle
Revises: 0007_sessions
Create Date: 2026-12-01

Written out in full (a migration is a frozen snapshot); ``store/lifecycle_tables.py`` must
describe the same schema. Outcomes are append-only (triggers), as decisions are.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_lifecycle"
down_revision: str | Sequence[str] | None = "0007_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = 32


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.String(TS), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "outcome_files",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("loaded_by", sa.String(64), nullable=False),
        _ts("loaded_at", False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("corrections", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcome_files")),
    )
    op.create_table(
        "outcomes",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("application_id", sa.Integer, nullable=False),
        sa.Column("file_id", sa.Integer, nullable=False),
        sa.Column("defaulted", sa.Boolean, nullable=False),
        sa.Column("observed_on", sa.String(10), nullable=False),
        sa.Column("amount_lost", sa.Float),
        sa.Column("days_past_due", sa.Integer),
        sa.Column("months_on_book", sa.Integer),
        sa.Column("exposure", sa.Float),
        sa.Column("realised_profit", sa.Float),
        sa.Column("supersedes_id", sa.Integer),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcomes")),
        sa.ForeignKeyConstraint(["application_id"], ["applications.id"],
                                name=op.f("fk_outcomes_application_id_applications")),
        sa.ForeignKeyConstraint(["file_id"], ["outcome_files.id"],
                                name=op.f("fk_outcomes_file_id_outcome_files")),
        sa.ForeignKeyConstraint(["supersedes_id"], ["outcomes.id"],
                                name=op.f("fk_outcomes_supersedes_id_outcomes")),
        sa.UniqueConstraint("supersedes_id", name=op.f("uq_outcomes_supersedes_id")),
    )
    op.create_index("uq_outcomes_first_per_application", "outcomes", ["application_id"], unique=True,
                    sqlite_where=sa.text("supersedes_id IS NULL"),
                    postgresql_where=sa.text("supersedes_id IS NULL"))
    op.create_index("ix_outcomes_application", "outcomes", ["application_id", "id"])
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("challenger_version", sa.String(64), nullable=False),
        sa.Column("low_edge", sa.Float, nullable=False),
        sa.Column("high_edge", sa.Float, nullable=False),
        sa.Column("share", sa.Float, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("started_by", sa.String(64), nullable=False),
        _ts("started_at", False),
        sa.Column("stopped_by", sa.String(64)),
        _ts("stopped_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
        sa.ForeignKeyConstraint(["challenger_version"], ["model_versions.version"],
                                name=op.f("fk_experiments_challenger_version_model_versions")),
        sa.CheckConstraint("kind IN ('split', 'shadow')", name=op.f("ck_experiments_kind_known")),
        sa.CheckConstraint("share >= 0 AND share <= 1", name=op.f("ck_experiments_share_fraction")),
    )
    op.create_index("uq_experiments_one_running", "experiments", ["kind"], unique=True,
                    sqlite_where=sa.text("stopped_at IS NULL"),
                    postgresql_where=sa.text("stopped_at IS NULL"))
    op.create_table(
        "application_arms",
        sa.Column("application_id", sa.Integer, nullable=False),
        sa.Column("experiment_id", sa.Integer, nullable=False),
        sa.Column("arm", sa.String(12), nullable=False),
        sa.PrimaryKeyConstraint("application_id", name=op.f("pk_application_arms")),
        sa.ForeignKeyConstraint(["application_id"], ["applications.id"],
                                name=op.f("fk_application_arms_application_id_applications")),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"],
                                name=op.f("fk_application_arms_experiment_id_experiments")),
        sa.CheckConstraint("arm IN ('champion', 'challenger')", name=op.f("ck_application_arms_arm_known")),
    )
    op.create_index("ix_application_arms_experiment", "application_arms", ["experiment_id", "arm"])
    op.create_table(
        "shadow_scores",
        sa.Column("application_id", sa.Integer, nullable=False),
        sa.Column("experiment_id", sa.Integer, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("band", sa.String(8), nullable=False),
        sa.Column("ev_approve", sa.Float),
        sa.PrimaryKeyConstraint("application_id", "experiment_id", name=op.f("pk_shadow_scores")),
        sa.ForeignKeyConstraint(["application_id"], ["applications.id"],
                                name=op.f("fk_shadow_scores_application_id_applications")),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"],
                                name=op.f("fk_shadow_scores_experiment_id_experiments")),
        sa.ForeignKeyConstraint(["model_version"], ["model_versions.version"],
                                name=op.f("fk_shadow_scores_model_version_model_versions")),
    )
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("promotion_note", sa.Text, nullable=True))
    _append_only("outcomes")


def _append_only(table: str) -> None:
    """Refuse UPDATE and DELETE of ``table`` (as the audit log and decisions are)."""
    if op.get_context().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")
    else:
        op.execute(f"""CREATE FUNCTION {table}_append_only() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION '{table} is append-only'; END $$ LANGUAGE plpgsql""")
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()")
