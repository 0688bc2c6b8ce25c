"""Drift statuses up to 32 characters ("insufficient_data" is 17).

Revision ID: 0003_drift_status_width
Revises: 0002_lending
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_drift_status_width"
down_revision: str | Sequence[str] | None = "0002_lending"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.alter_column("drift_status", type_=sa.String(32), existing_type=sa.String(16),
                           existing_nullable=False)
    with op.batch_alter_table("drift_runs") as batch:
        batch.alter_column("status", type_=sa.String(32), existing_type=sa.String(16),
                           existing_nullable=False)
