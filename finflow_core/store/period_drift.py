"""Drift of typed-in applications, measured per week instead of per (one-row) batch.

One application is no population: its own PSI reads 8 or more whatever happened. Each
typed-in batch keeps its bin counts (``batches.drift_counts``); the week's counts are
added up in one ``drift_runs`` row of kind ``period`` per week and model version (counts
add up, PSI does not: :func:`finflow_core.lending.drift.merge_counts`). Until the week
holds ``monitoring.min_rows`` applications that row is ``insufficient_data`` and the
drift history leaves it out; from then on it is a drift run like a weekly file's.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, delete, select, update

from finflow_core.lending.drift import DriftBaseline, merge_counts
from finflow_core.lending.terms import BatchOrigin, BatchState
from finflow_core.store.lending_tables import batches, drift_runs

PERIOD = "period"


def _finite(v: float | None) -> float | None:
    return None if v is None or v != v or v in (float("inf"), float("-inf")) else float(v)


def _write(conn: Connection, baseline: DriftBaseline, version: str, week: str,
           counts: dict[str, list[int]], min_rows: int, confidence: float, at: str,
           existing: Any) -> None:
    report = baseline.report(counts, min_rows=min_rows, confidence=confidence)
    values = dict(
        status=report.status, score_psi=_finite(report.score_psi), rows=report.rows,
        psi=json.dumps({k: _finite(v) for k, v in report.features.items()}),
        counts=json.dumps(merge_counts([counts])), computed_at=at,
    )
    if existing is None:
        conn.execute(drift_runs.insert().values(batch_id=None, kind=PERIOD, period_start=week,
                                                model_version=version, **values))
    else:
        conn.execute(update(drift_runs).where(drift_runs.c.id == existing.id).values(**values))


def _period_row(conn: Connection, version: str, week: str) -> Any:
    d = drift_runs.c
    return conn.execute(select(d.id, d.counts).where(d.kind == PERIOD).where(d.period_start == week)
                        .where(d.model_version == version)).first()


def add_to_period(conn: Connection, baseline: DriftBaseline, version: str, week: str,
                  counts: dict[str, list[int]], *, min_rows: int, confidence: float,
                  at: str) -> None:
    """Add one typed-in batch's counts to its week's period run and measure it again."""
    row = _period_row(conn, version, week)
    merged = counts if row is None else merge_counts([json.loads(row.counts), counts])
    _write(conn, baseline, version, week, merged, min_rows, confidence, at, row)


def recount_period(conn: Connection, baseline: DriftBaseline, version: str, week: str, *,
                   min_rows: int, confidence: float, at: str) -> None:
    """Rebuild a week's period run from its published typed-in batches (after a void)."""
    b = batches.c
    stored = [json.loads(t) for t in conn.execute(
        select(b.drift_counts).where(b.origin == BatchOrigin.FORM).where(b.state == BatchState.PUBLISHED)
        .where(b.week_start == week).where(b.model_version == version)
        .where(b.drift_counts.is_not(None))).scalars()]
    row = _period_row(conn, version, week)
    if not stored:
        if row is not None:
            conn.execute(delete(drift_runs).where(drift_runs.c.id == row.id))
        return
    _write(conn, baseline, version, week, merge_counts(stored), min_rows, confidence, at, row)
