"""The review desk: lending limits, four eyes, the model's suggestion on each decision.

Revision ID: 0006_review_desk
Revises: 0005_integrity
Create Date: 2026-12-02

- ``users.lending_limit``: the amount an officer may commit alone (NULL: not set);
- ``decisions``: three nullable columns, added in place (ALTER TABLE ... ADD COLUMN keeps
  the append-only triggers): ``suggestion`` (what the model suggested when an officer
  decided), ``proposed_by`` (the first officer when a second one confirmed) and
  ``four_eyes`` (why a second officer was needed), and an index on kind and time, so
  "decided today" and the override rate find officers' decisions among a million
  automatic ones;
- ``proposals``: decisions awaiting a second officer, and how each one ended.

``finflow_core/store/lending_tables.py`` and ``tables.py`` describe the same schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_review_desk"
down_revision: str | Sequence[str] | None = "0005_integrity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = 32


def upgrade() -> None:
    op.add_column("users", sa.Column("lending_limit", sa.Float, nullable=True))

    op.add_column("decisions", sa.Column("suggestion", sa.String(8), nullable=True))
    op.add_column("decisions", sa.Column("proposed_by", sa.String(64), nullable=True))
    op.add_column("decisions", sa.Column("four_eyes", sa.String(32), nullable=True))
    op.create_index("ix_decisions_kind", "decisions", ["kind", "decided_at"])

    op.create_table(
        "proposals",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("application_id", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("supersedes_id", sa.Integer, nullable=True),
        sa.Column("proposed_by", sa.String(64), nullable=False),
        sa.Column("proposed_at", sa.String(TS), nullable=False),
        sa.Column("needs", sa.String(32), nullable=False),
        sa.Column("amount", sa.Float, nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("suggestion", sa.String(8), nullable=False),
        sa.Column("authority_limit", sa.Float, nullable=True),
        sa.Column("status", sa.String(12), nullable=False, server_default="open"),
        sa.Column("closed_by", sa.String(64), nullable=True),
        sa.Column("closed_at", sa.String(TS), nullable=True),
        sa.Column("close_note", sa.Text, nullable=False, server_default=""),
        sa.Column("decision_id", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proposals")),
        sa.ForeignKeyConstraint(["application_id"], ["applications.id"],
                                name=op.f("fk_proposals_application_id_applications")),
        sa.ForeignKeyConstraint(["supersedes_id"], ["decisions.id"],
                                name=op.f("fk_proposals_supersedes_id_decisions")),
        sa.ForeignKeyConstraint(["decision_id"], ["decisions.id"],
                                name=op.f("fk_proposals_decision_id_decisions")),
        sa.CheckConstraint("outcome IN ('approve', 'decline', 'refer')",
                           name=op.f("ck_proposals_outcome_known")),
        sa.CheckConstraint("status IN ('open', 'confirmed', 'rejected', 'withdrawn')",
                           name=op.f("ck_proposals_status_known")),
    )
    # at most one open proposal per application
    op.create_index("uq_proposals_one_open", "proposals", ["application_id"], unique=True,
                    sqlite_where=sa.text("status = 'open'"),
                    postgresql_where=sa.text("status = 'open'"))
    op.create_index("ix_proposals_status", "proposals", ["status", "id"])


def downgrade() -> None:
    raise NotImplementedError(
        "FinFlow never downgrades a database (it would delete the lending record): restore a backup"
    )
