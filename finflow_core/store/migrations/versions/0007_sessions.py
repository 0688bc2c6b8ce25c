"""Browser sessions (a hashed random token per signed-in browser) and sign-in failures under
names that are no user (the same lockout for unknown names as for real ones).

Revision ID: 0007_sessions
Revises: 0006_review_desk
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_sessions"
down_revision: str | Sequence[str] | None = "0006_review_desk"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = 32  # width of an ISO-8601 UTC timestamp with microseconds


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=True),
        sa.Column("handoff_hash", sa.String(64), nullable=True),
        sa.Column("handoff_expires_at", sa.String(TS), nullable=True),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("password_stamp", sa.String(64), nullable=False),
        sa.Column("roles", sa.String(200), nullable=False),
        sa.Column("created_at", sa.String(TS), nullable=False),
        sa.Column("last_seen_at", sa.String(TS), nullable=False),
        sa.Column("expires_at", sa.String(TS), nullable=False),
        sa.Column("revoked_at", sa.String(TS), nullable=True),
        sa.Column("revoked_reason", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_web_sessions_token_hash")),
        sa.UniqueConstraint("handoff_hash", name=op.f("uq_web_sessions_handoff_hash")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_web_sessions_user_id_users")),
    )
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    op.create_table(
        "sign_in_failures",
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("failed_logins", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("locked_until", sa.String(TS), nullable=True),
        sa.Column("last_failed_at", sa.String(TS), nullable=False),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_sign_in_failures")),
    )
    op.create_index("ix_sign_in_failures_last_failed_at", "sign_in_failures", ["last_failed_at"])


def downgrade() -> None:
    raise NotImplementedError(
        "FinFlow never downgrades a database: restore a backup instead"
    )
