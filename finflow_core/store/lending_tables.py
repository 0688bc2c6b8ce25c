"""Tables of the lending record: model versions, batches, applications, scores, decisions.

They share :data:`finflow_core.store.tables.metadata` and its conventions (timestamps as
fixed-width ISO-8601 UTC text). The current state of an application (band, status,
expected profit) is kept on its row as well as in the history tables, and the portfolio
figures are kept summed in two roll-up tables updated in the same transactions, so a
manager's page groups a few thousand roll-up rows, not a million applications.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from finflow_core.store.tables import TIMESTAMP_LEN, metadata


def _ts(name: str, *, nullable: bool = True) -> Column[str]:
    return Column(name, String(TIMESTAMP_LEN), nullable=nullable)


model_versions = Table(
    "model_versions",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("model_name", String(64), nullable=False),
    Column("status", String(16), nullable=False, server_default="candidate"),
    Column("artifact_sha256", String(64), nullable=False),
    Column("training_data_sha256", String(64), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("folder", Text, nullable=False),
    Column("card", Text, nullable=False),
    _ts("created_at", nullable=False),
    Column("trained_by", String(64), nullable=False),
    _ts("promoted_at"),
    Column("promoted_by", String(64)),
    Column("seal", String(32)),  # keyed MAC (finflow_core.store.seals); not of status or folder
    CheckConstraint("status IN ('candidate', 'champion', 'retired')", name="status_known"),
    Index("uq_model_versions_one_champion", "status", unique=True,
          sqlite_where=text("status = 'champion'"), postgresql_where=text("status = 'champion'")),
)

#: Band edges saved by a manager for a model version (the newest row wins).
strategies = Table(
    "strategies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_version", String(64), ForeignKey("model_versions.version"), nullable=False),
    Column("low_edge", Float, nullable=False),
    Column("high_edge", Float, nullable=False),
    Column("note", Text, nullable=False, server_default=""),
    _ts("saved_at", nullable=False),
    Column("saved_by", String(64), nullable=False),
    Column("seal", String(32)),
    CheckConstraint("low_edge >= 0 AND low_edge <= high_edge", name="edges_ordered"),
    Index("ix_strategies_model_version", "model_version", "id"),
)

batches = Table(
    "batches",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("file_name", String(255), nullable=False),
    Column("uploaded_by", String(64), nullable=False),
    _ts("uploaded_at", nullable=False),
    Column("model_version", String(64), ForeignKey("model_versions.version"), nullable=False),
    Column("low_edge", Float, nullable=False),
    Column("high_edge", Float, nullable=False),
    Column("week_start", String(10), nullable=False),
    Column("rows_in", Integer, nullable=False),
    Column("rows_valid", Integer, nullable=False),
    Column("rows_quarantined", Integer, nullable=False),
    Column("n_low", Integer, nullable=False),
    Column("n_medium", Integer, nullable=False),
    Column("n_high", Integer, nullable=False),
    Column("automation_rate", Float, nullable=False),
    Column("expected_profit", Float, nullable=False),
    Column("drift_status", String(32), nullable=False),
    Column("summary", Text, nullable=False),
    CheckConstraint("rows_in = rows_valid + rows_quarantined", name="rows_add_up"),
    Index("ix_batches_uploaded_at", "uploaded_at"),
)

applications = Table(
    "applications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(32), ForeignKey("batches.id"), nullable=False),
    Column("row_number", Integer, nullable=False),
    Column("external_id", String(128), nullable=False),
    Column("week_start", String(10), nullable=False),
    Column("amount", Float, nullable=False),
    Column("segment_1", String(64)),
    Column("segment_2", String(64)),
    Column("segment_3", String(64)),
    Column("data", Text, nullable=False),  # the cells as submitted (JSON object of text)
    # current state, kept in step with scores and decisions in the same transaction
    Column("probability", Float, nullable=False),
    Column("band", String(8), nullable=False),
    Column("status", String(12), nullable=False),
    Column("expected_profit", Float, nullable=False),
    Column("decided_kind", String(8)),
    Column("current_decision_id", Integer),
    # keyed MAC of the application as submitted and scored (not of the current state above,
    # which verify checks against the sealed scores and decisions)
    Column("seal", String(32)),
    UniqueConstraint("batch_id", "row_number"),
    CheckConstraint("band IN ('low', 'medium', 'high')", name="band_known"),
    CheckConstraint("status IN ('approved', 'declined', 'pending', 'referred')", name="status_known"),
    Index("ix_applications_external_id", "external_id"),
    Index("ix_applications_queue", "status", "id"),
    Index("ix_applications_queue_amount", "status", "amount", "id"),
)

scores = Table(
    "scores",
    metadata,
    Column("application_id", Integer, ForeignKey("applications.id"), primary_key=True),
    Column("model_version", String(64), ForeignKey("model_versions.version"), nullable=False),
    Column("probability", Float, nullable=False),
    Column("band", String(8), nullable=False),
    Column("ev_approve", Float, nullable=False),
    Column("ev_review", Float, nullable=False),
    Column("reasons", Text, nullable=False),  # JSON list of {feature, text, value, contribution}
    _ts("scored_at", nullable=False),
    Column("seal", String(32)),
)

decisions = Table(
    "decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("application_id", Integer, ForeignKey("applications.id"), nullable=False),
    Column("outcome", String(8), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("decided_by", String(64), nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("note", Text, nullable=False, server_default=""),
    _ts("decided_at", nullable=False),
    Column("model_version", String(64)),
    Column("supersedes_id", Integer, ForeignKey("decisions.id"), unique=True),
    Column("seal", String(32)),  # officers' decisions; automatic ones follow from their score
    CheckConstraint("outcome IN ('approve', 'decline', 'refer')", name="outcome_known"),
    CheckConstraint("kind IN ('auto', 'manual')", name="kind_known"),
    # one first decision per application; every later one supersedes exactly one
    Index("uq_decisions_first_per_application", "application_id", unique=True,
          sqlite_where=text("supersedes_id IS NULL"),
          postgresql_where=text("supersedes_id IS NULL")),
    Index("ix_decisions_application", "application_id", "id"),
)

claims = Table(
    "claims",
    metadata,
    Column("application_id", Integer, ForeignKey("applications.id"), primary_key=True),
    Column("claimed_by", String(64), nullable=False),
    _ts("claimed_at", nullable=False),
    _ts("expires_at", nullable=False),
)

quarantine_rows = Table(
    "quarantine_rows",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(32), ForeignKey("batches.id"), nullable=False),
    Column("row_number", Integer, nullable=False),
    Column("line", Integer, nullable=False),
    Column("external_id", String(255)),
    Column("reasons", Text, nullable=False),
    Column("data", Text, nullable=False),  # the cells exactly as written
    UniqueConstraint("batch_id", "row_number"),
)

quarantine_issues = Table(
    "quarantine_issues",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(32), ForeignKey("batches.id"), nullable=False),
    Column("row_number", Integer, nullable=False),
    Column("column_name", String(128), nullable=False),
    Column("rule", String(32), nullable=False),
    Column("value", Text),
    Column("message", Text, nullable=False),
    Index("ix_quarantine_issues_batch", "batch_id", "row_number"),
)

drift_runs = Table(
    "drift_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(32), ForeignKey("batches.id"), nullable=False, unique=True),
    Column("model_version", String(64), ForeignKey("model_versions.version"), nullable=False),
    Column("status", String(32), nullable=False),
    Column("score_psi", Float),
    Column("psi", Text, nullable=False),  # JSON {feature: psi}
    Column("counts", Text, nullable=False),  # JSON {feature: [bin counts]}
    _ts("computed_at", nullable=False),
)


#: Counts, amounts and expected profit per week, batch, band, status, decision kind and
#: segment ('' where a segment is unused). Updated with every batch and every decision.
portfolio_rollup = Table(
    "portfolio_rollup",
    metadata,
    Column("week_start", String(10), nullable=False),
    Column("batch_id", String(32), ForeignKey("batches.id"), nullable=False),
    Column("band", String(8), nullable=False),
    Column("status", String(12), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("segment_1", String(64), nullable=False),
    Column("segment_2", String(64), nullable=False),
    Column("segment_3", String(64), nullable=False),
    Column("n", Integer, nullable=False),
    Column("amount", Float, nullable=False),
    Column("expected_profit", Float, nullable=False),
    UniqueConstraint("week_start", "batch_id", "band", "status", "kind", "segment_1", "segment_2",
                     "segment_3", name="uq_portfolio_rollup_key"),
)

#: Applications per probability bin (twentieths), for the risk distribution.
probability_rollup = Table(
    "probability_rollup",
    metadata,
    Column("week_start", String(10), nullable=False),
    Column("batch_id", String(32), ForeignKey("batches.id"), nullable=False),
    Column("segment_1", String(64), nullable=False),
    Column("segment_2", String(64), nullable=False),
    Column("segment_3", String(64), nullable=False),
    Column("bin", Integer, nullable=False),
    Column("n", Integer, nullable=False),
    UniqueConstraint("week_start", "batch_id", "segment_1", "segment_2", "segment_3", "bin",
                     name="uq_probability_rollup_key"),
)
