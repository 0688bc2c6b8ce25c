"""Publishing a loaded batch: the one short transaction that makes all of it visible.

Until it runs, the batch's row says ``loading`` and every read ignores its applications;
this marks it published with its totals and writes its roll-ups, its drift and its three
audit entries (the ``batch_scored`` one carries the seal sums and the digest of the
automatic decisions that ``audit verify`` recomputes).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, update

from finflow_core.lending.drift import DriftReport
from finflow_core.lending.terms import Band, BatchOrigin, BatchState, Outcome
from finflow_core.pipeline.run import BatchSummary
from finflow_core.store import batch_loads
from finflow_core.store.audit_chain import append_audit
from finflow_core.store.chunk_rows import json_default
from finflow_core.store.lending_tables import batches, drift_runs
from finflow_core.store.period_drift import add_to_period
from finflow_core.store.tables import iso_utc

if TYPE_CHECKING:  # the sink calls this module; it is only named here for its totals
    from finflow_core.store.batch_writer import StoreSink


def publish(conn: Connection, sink: StoreSink, summary: BatchSummary, drift: DriftReport) -> None:
    """Mark the batch published with its totals, and write its roll-ups, drift and audit
    entries, in the caller's (short) transaction."""
    week = max(sink.weeks, key=lambda w: (sink.weeks[w], w)) if sink.weeks else sink.upload_week
    bands = summary.bands
    bid, version = sink.batch_id, sink.scoring.bundle.version
    summary.origin = sink.origin  # who and when are on the row (read back with the summary)
    counts = {k: [int(x) for x in v] for k, v in drift.counts.items()}
    changed = conn.execute(update(batches).where(batches.c.id == bid)
                           .where(batches.c.state == BatchState.LOADING).values(
        rows_in=summary.rows_in, rows_valid=summary.rows_valid,
        rows_quarantined=summary.rows_quarantined, n_low=bands[Band.LOW],
        n_medium=bands[Band.MEDIUM], n_high=bands[Band.HIGH],
        automation_rate=summary.automation_rate, expected_profit=summary.expected_profit,
        drift_status=drift.status, week_start=week,
        summary=json.dumps(stored_summary_dict(summary), default=json_default),
        state=BatchState.PUBLISHED, published_at=iso_utc(sink.at), rows_written=summary.rows_in,
        drift_counts=json.dumps(counts),
    )).rowcount
    if changed != 1:
        raise batch_loads.LoadLost(f"batch {bid} is no longer loading: nothing was published",
                                   reason="load_lost", batch_id=bid)
    sink.rollups.write(conn)
    if sink.origin == BatchOrigin.FILE:
        conn.execute(drift_runs.insert().values(
            batch_id=bid, model_version=version, status=drift.status, kind="batch",
            score_psi=finite(drift.score_psi), rows=drift.rows,
            psi=json.dumps({k: finite(v) for k, v in drift.features.items()}),
            counts=json.dumps(counts), computed_at=sink.now,
        ))
    else:  # a typed-in application: drift is measured over its week, once enough arrived
        monitoring = sink.config.monitoring
        add_to_period(conn, sink.scoring.bundle.baseline, version, week, counts,
                      min_rows=monitoring.min_rows, confidence=monitoring.confidence, at=sink.now)
    actor = sink.actor_name
    append_audit(conn, actor, "batch_uploaded", "batch", bid, {
        "file": sink.batch.name, "sha256": sink.batch.sha256, "rows_in": summary.rows_in,
        "rows_valid": summary.rows_valid, "rows_quarantined": summary.rows_quarantined,
        "origin": sink.origin, "config_sha256": sink.config.sha256,
    }, model_version=version, at=sink.at)
    append_audit(conn, actor, "batch_scored", "batch", bid, {
        "bands": bands, "automatic_approvals": sink.auto[Outcome.APPROVE],
        "automatic_declines": sink.auto[Outcome.DECLINE], "expected_profit": summary.expected_profit,
        "low_edge": sink.scoring.strategy.low_edge, "high_edge": sink.scoring.strategy.high_edge,
        "auto_decisions_sha256": sink.digest.hexdigest(),
        "config_sha256": sink.config.sha256, **sink.seals.details(), **sink.experiment_details(),
    }, model_version=version, at=sink.at)
    append_audit(conn, actor, "drift_measured", "batch", bid, {
        "status": drift.status, "score_psi": finite(drift.score_psi), "alerts": drift.alerts,
    }, model_version=version, at=sink.at)


def stored_summary_dict(summary: BatchSummary) -> dict[str, Any]:
    d = summary.to_dict()
    d.pop("timings", None)
    d["already_stored"] = False
    return d


def finite(v: float | None) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)
