"""Keyed per-row seals on every table that drives or records a decision.

Revision ID: 0005_integrity
Revises: 0004_batch_lifecycle
Create Date: 2026-12-01

Each sealed table gets a nullable ``seal`` column (32 hex characters: a BLAKE2b-128 MAC
under the installation key, see ``finflow_core/store/seals.py``). Rows written before this
revision stay NULL: ``finflow audit verify`` lists them as unsealed until an admin adopts
them (``finflow audit seal-legacy``, itself an audit event). The key is not in the database,
so no migration can seal anything; an unkeyed chain is continued keyed at its next entry
(a ``chain_keyed`` entry records where).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_integrity"
down_revision: str | Sequence[str] | None = "0004_batch_lifecycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEALED = ("users", "model_versions", "strategies", "applications", "scores", "decisions")


def upgrade() -> None:
    for table in SEALED:
        op.add_column(table, sa.Column("seal", sa.String(32), nullable=True))
    # the fingerprint of the key the chain is keyed with: a wrong key file is named at once
    op.add_column("audit_head", sa.Column("key_fingerprint", sa.String(16), nullable=True))


def downgrade() -> None:
    raise NotImplementedError(
        "FinFlow never downgrades a database (it would delete the lending record): restore a backup"
    )
