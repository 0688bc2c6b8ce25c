"""Tables of the model lifecycle: realised outcomes, champion-challenger experiments, shadow scores.

Outcomes are append-only like decisions: the first outcome of an application, then explicit
corrections, each superseding exactly one earlier record (the current outcome is the one
nothing supersedes). An experiment sends a share of each batch to a challenger model and
strategy (``split``), or scores beside the champion without deciding (``shadow``).

Every table here is sealed (``seal``, see ``finflow_core.store.seals``): experiments and
outcome files by their audit events, arms and shadow scores by their batch's
``batch_scored`` entry, outcomes by their file's ``outcomes_loaded`` entry.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    text,
)

from finflow_core.store.tables import TIMESTAMP_LEN, metadata


def _ts(name: str, *, nullable: bool = True) -> Column[str]:
    return Column(name, String(TIMESTAMP_LEN), nullable=nullable)


outcome_files = Table(
    "outcome_files",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("loaded_by", String(64), nullable=False),
    _ts("loaded_at", nullable=False),
    Column("rows", Integer, nullable=False),
    Column("corrections", Integer, nullable=False, server_default=text("0")),
    Column("reason", Text, nullable=False, server_default=""),
    Column("seal", String(32)),  # keyed MAC (finflow_core.store.seals), revision 0011
)

outcomes = Table(
    "outcomes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("application_id", Integer, ForeignKey("applications.id"), nullable=False),
    Column("file_id", Integer, ForeignKey("outcome_files.id"), nullable=False),
    Column("defaulted", Boolean, nullable=False),
    Column("observed_on", String(10), nullable=False),
    Column("amount_lost", Float),
    Column("days_past_due", Integer),
    Column("months_on_book", Integer),
    # share of the loan's term on book when observed (1: matured); defaults so far are compared
    # with PD x exposure, assuming defaults spread evenly over the term
    Column("exposure", Float),
    # profit actually made (repaid: the contractual margin; defaulted: minus the loss)
    Column("realised_profit", Float),
    Column("supersedes_id", Integer, ForeignKey("outcomes.id"), unique=True),
    Column("seal", String(32)),  # keyed MAC (finflow_core.store.seals), revision 0011
    Index("uq_outcomes_first_per_application", "application_id", unique=True,
          sqlite_where=text("supersedes_id IS NULL"), postgresql_where=text("supersedes_id IS NULL")),
    Index("ix_outcomes_application", "application_id", "id"),
)

experiments = Table(
    "experiments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False),
    Column("challenger_version", String(64), ForeignKey("model_versions.version"), nullable=False),
    Column("low_edge", Float, nullable=False),
    Column("high_edge", Float, nullable=False),
    Column("share", Float, nullable=False),
    Column("seed", Integer, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("started_by", String(64), nullable=False),
    _ts("started_at", nullable=False),
    Column("stopped_by", String(64)),
    _ts("stopped_at"),
    Column("seal", String(32)),  # keyed MAC (finflow_core.store.seals), revision 0011
    CheckConstraint("kind IN ('split', 'shadow')", name="kind_known"),
    CheckConstraint("share >= 0 AND share <= 1", name="share_fraction"),
    Index("uq_experiments_one_running", "kind", unique=True,
          sqlite_where=text("stopped_at IS NULL"), postgresql_where=text("stopped_at IS NULL")),
)

application_arms = Table(
    "application_arms",
    metadata,
    Column("application_id", Integer, ForeignKey("applications.id"), primary_key=True),
    Column("experiment_id", Integer, ForeignKey("experiments.id"), nullable=False),
    Column("arm", String(12), nullable=False),
    Column("seal", String(32)),  # keyed MAC (finflow_core.store.seals), revision 0011
    CheckConstraint("arm IN ('champion', 'challenger')", name="arm_known"),
    Index("ix_application_arms_experiment", "experiment_id", "arm"),
)

shadow_scores = Table(
    "shadow_scores",
    metadata,
    Column("application_id", Integer, ForeignKey("applications.id"), primary_key=True),
    Column("experiment_id", Integer, ForeignKey("experiments.id"), primary_key=True),
    Column("model_version", String(64), ForeignKey("model_versions.version"), nullable=False),
    Column("probability", Float, nullable=False),
    Column("band", String(8), nullable=False),
    Column("ev_approve", Float),
    Column("seal", String(32)),  # keyed MAC (finflow_core.store.seals), revision 0011
)

__all__ = ["application_arms", "experiments", "outcome_files", "outcomes", "shadow_scores"]
