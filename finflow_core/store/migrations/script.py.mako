"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Write the operations out explicitly (op.create_table / op.add_column ...) and keep
finflow_core/store/tables.py in step: tests compare the migrated schema with it.
On SQLite, alter existing tables inside ``with op.batch_alter_table(...)``; rebuilding
``audit_log`` drops its append-only triggers, so recreate them (see 0001_foundation).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    raise NotImplementedError("FinFlow never downgrades a database: restore a backup instead")
