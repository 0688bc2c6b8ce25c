"""Keyed per-row seals on the model lifecycle's tables, as 0005 gave the lending tables.

Revision ID: 0011_seal_lifecycle
Revises: 0009_cheap_checks
Create Date: 2026-12-02

Four-eyes proposals, champion-challenger experiments, the arm that decided each case of a
split, shadow scores, outcome files and outcomes each get a nullable ``seal`` column (32 hex
characters: a BLAKE2b-128 MAC under the installation key, see
``finflow_core/store/seals.py``). Rows written before this revision stay NULL: ``finflow
audit verify`` lists them as unsealed until an admin adopts them (``finflow audit
seal-legacy``, itself an audit event; outcomes are append-only, so the adoption's entry keeps
their seals, as it does for officers' decisions). The key is not in the database, so no
migration can seal anything. Written out in full (a migration is a frozen snapshot);
``store/lending_tables.py`` and ``store/lifecycle_tables.py`` must describe the same schema.
Adding a nullable column copies no row on SQLite or PostgreSQL and fires no trigger.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_seal_lifecycle"
down_revision: str | Sequence[str] | None = "0009_cheap_checks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEALED = ("proposals", "experiments", "application_arms", "shadow_scores", "outcome_files",
          "outcomes")


def upgrade() -> None:
    for table in SEALED:
        op.add_column(table, sa.Column("seal", sa.String(32), nullable=True))


def downgrade() -> None:
    raise NotImplementedError(
        "FinFlow never downgrades a database (it would delete the lending record): restore a backup"
    )
