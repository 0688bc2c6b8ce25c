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


def one_of(column: str, *values: str) -> str:
    """A CHECK that ``column`` holds one of ``values``, as ``column = 'a' OR column = 'b' ...``."""
    return " OR ".join(f"{column} = {v!r}" for v in values)


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
    Column("promotion_note", Text),  # why the manager promoted it (also in the audit trail)
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

#: Batch states: ``loading`` while its chunks are written (invisible to every read),
#: ``aborting`` while a dead load's rows are removed, ``published`` once complete (one short
#: transaction), ``voided`` when a manager took it out of the queue and the portfolio.
BATCH_STATES = ("loading", "aborting", "published", "voided")
#: States that occupy a file: at most one such batch per file hash.
LIVE_STATES = ("loading", "aborting", "published")
_LIVE = text("state IN ('loading', 'aborting', 'published')")
#: the review queue's statuses, as written in the partial index (a query must repeat this
#: text, with literals, for the planner to use the index: :data:`OPEN_CASES`)
OPEN_CASES_SQL = "status IN ('pending', 'referred')"
_OPEN = text(OPEN_CASES_SQL)
OPEN_CASES = text(f"applications.{OPEN_CASES_SQL}")

batches = Table(
    "batches",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("sha256", String(64), nullable=False),
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
    Column("expected_profit", Float),  # NULL: nothing priced
    Column("drift_status", String(32), nullable=False),
    Column("summary", Text, nullable=False),
    Column("state", String(10), nullable=False, server_default="published"),
    Column("origin", String(8), nullable=False, server_default="file"),  # file | form
    Column("config_sha256", String(64)),
    # who is writing a loading batch, and when it last said so (abandoned loads are removed)
    Column("loader_pid", Integer),
    Column("loader_host", String(255)),
    _ts("heartbeat_at"),
    Column("rows_written", Integer, nullable=False, server_default="0"),
    _ts("published_at"),
    _ts("voided_at"),
    Column("voided_by", String(64)),
    Column("void_reason", Text),
    Column("drift_counts", Text),  # JSON {column: [bin counts]}: a period's drift adds them up
    CheckConstraint("rows_in = rows_valid + rows_quarantined", name="rows_add_up"),
    CheckConstraint("state IN ('loading', 'aborting', 'published', 'voided')", name="state_known"),
    CheckConstraint("origin IN ('file', 'form')", name="origin_known"),
    Index("ix_batches_uploaded_at", "uploaded_at"),
    Index("ix_batches_sha256", "sha256"),
    Index("uq_batches_live_sha256", "sha256", unique=True, sqlite_where=_LIVE, postgresql_where=_LIVE),
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
    Column("expected_profit", Float),  # NULL: nothing priced
    Column("decided_kind", String(8)),
    Column("current_decision_id", Integer),
    # keyed MAC of the application as submitted and scored (not of the current state above,
    # which verify checks against the sealed scores and decisions)
    Column("seal", String(32)),
    UniqueConstraint("batch_id", "row_number"),
    # value lists as chains of "=": SQLite checks "x IN (3+ values)" through a temporary
    # table per inserted row (migration 0009)
    CheckConstraint(one_of("band", "low", "medium", "high"), name="band_known"),
    CheckConstraint(one_of("status", "approved", "declined", "pending", "referred"),
                    name="status_known"),
    Index("ix_applications_external_id", "external_id"),
    Index("ix_applications_queue", "status", "id"),
    # only open cases (the queue's "largest first"): an index over every application keyed
    # by amount takes random inserts, which made storing a million rows 4-5x slower
    Index("ix_applications_queue_amount", "status", "amount", "id", sqlite_where=_OPEN,
          postgresql_where=_OPEN),
)

scores = Table(
    "scores",
    metadata,
    Column("application_id", Integer, ForeignKey("applications.id"), primary_key=True),
    Column("model_version", String(64), ForeignKey("model_versions.version"), nullable=False),
    Column("probability", Float, nullable=False),
    Column("band", String(8), nullable=False),
    Column("ev_approve", Float),  # NULL: nothing priced
    Column("ev_review", Float),
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
    # an officer's decision: what the model suggested, and with four eyes who proposed it
    # (decided_by confirmed it) and why a second officer was needed
    Column("suggestion", String(8)),
    Column("proposed_by", String(64)),
    Column("four_eyes", String(32)),
    Column("seal", String(32)),  # officers' decisions; automatic ones follow from their score
    CheckConstraint(one_of("outcome", "approve", "decline", "refer"), name="outcome_known"),
    CheckConstraint("kind IN ('auto', 'manual')", name="kind_known"),
    # one first decision per application; every later one supersedes exactly one
    Index("uq_decisions_first_per_application", "application_id", unique=True,
          sqlite_where=text("supersedes_id IS NULL"),
          postgresql_where=text("supersedes_id IS NULL")),
    Index("ix_decisions_application", "application_id", "id"),
    Index("ix_decisions_kind", "kind", "decided_at"),
)

#: Decisions awaiting a second officer (four eyes), and how each ended: confirmed (then
#: ``decision_id`` is the decision it became), rejected by another officer or withdrawn.
proposals = Table(
    "proposals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("application_id", Integer, ForeignKey("applications.id"), nullable=False),
    Column("outcome", String(8), nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("note", Text, nullable=False, server_default=""),
    Column("supersedes_id", Integer, ForeignKey("decisions.id")),
    Column("proposed_by", String(64), nullable=False),
    _ts("proposed_at", nullable=False),
    Column("needs", String(32), nullable=False),  # authority, override (comma-separated)
    Column("amount", Float, nullable=False),
    Column("probability", Float, nullable=False),
    Column("suggestion", String(8), nullable=False),
    Column("authority_limit", Float),  # the proposer's limit at the time
    Column("status", String(12), nullable=False, server_default="open"),
    Column("closed_by", String(64)),
    _ts("closed_at"),
    Column("close_note", Text, nullable=False, server_default=""),
    Column("decision_id", Integer, ForeignKey("decisions.id")),
    Column("seal", String(32)),  # keyed MAC (finflow_core.store.seals), revision 0011
    CheckConstraint("outcome IN ('approve', 'decline', 'refer')", name="outcome_known"),
    CheckConstraint("status IN ('open', 'confirmed', 'rejected', 'withdrawn')", name="status_known"),
    Index("uq_proposals_one_open", "application_id", unique=True,
          sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'")),
    Index("ix_proposals_status", "status", "id"),
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

#: PSI of one file batch (``kind`` batch), or of a period's typed-in applications (``kind``
#: period: ``period_start`` is the week, no batch; recomputed as applications arrive).
drift_runs = Table(
    "drift_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(32), ForeignKey("batches.id"), unique=True),
    Column("model_version", String(64), ForeignKey("model_versions.version"), nullable=False),
    Column("status", String(32), nullable=False),
    Column("score_psi", Float),
    Column("psi", Text, nullable=False),  # JSON {feature: psi}
    Column("counts", Text, nullable=False),  # JSON {feature: [bin counts]}
    _ts("computed_at", nullable=False),
    Column("kind", String(8), nullable=False, server_default="batch"),
    Column("period_start", String(10)),
    Column("rows", Integer),
    CheckConstraint("kind IN ('batch', 'period')", name="kind_known"),
    Index("uq_drift_runs_period", "period_start", "model_version", unique=True,
          sqlite_where=text("kind = 'period'"), postgresql_where=text("kind = 'period'")),
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
    Column("expected_profit", Float),  # NULL: nothing priced
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
