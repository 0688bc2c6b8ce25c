"""The portfolio's figures, grouped by the database from the roll-up tables.

The roll-ups (kept in step by every batch and decision, see ``rollup``) hold counts,
amounts and expected profit per week, batch, band, status, decision kind and segment; a
manager's page is one GROUP BY over a few thousand rows whatever the number of applications.
Only published batches count: a loading batch has no roll-up rows yet, and a voided one's
are removed (and excluded here as well).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import Connection, and_, func, select

from finflow_core.lending.terms import BatchState
from finflow_core.store.lending_tables import batches, portfolio_rollup, probability_rollup
from finflow_core.store.rollup import HIST_BINS, published

#: The file name of the one-row batch an application typed in is stored as starts so.
TYPED_IN_PREFIX = "form:"


@dataclass(frozen=True)
class PortfolioFilter:
    """Which applications to include; empty means all."""

    week_from: str | None = None  # YYYY-MM-DD, inclusive
    week_to: str | None = None
    batch_ids: tuple[str, ...] = ()
    segments: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> allowed values


def _where(table: Any, segment_keys: dict[str, str], f: PortfolioFilter) -> list[Any]:
    c = table.c
    conds: list[Any] = [published(c.batch_id)]
    if f.week_from:
        conds.append(c.week_start >= f.week_from)
    if f.week_to:
        conds.append(c.week_start <= f.week_to)
    if f.batch_ids:
        conds.append(c.batch_id.in_(f.batch_ids))
    for name, values in f.segments.items():
        if values:
            conds.append(c[segment_keys[name]].in_(values))
    return conds


def grouped(conn: Connection, segment_keys: dict[str, str], f: PortfolioFilter,
            segment_key: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(groups: week_start, band, status, kind, typed_in, [segment], n, amount, expected_profit;
    histogram: bin_start, bin_end, n). ``typed_in`` marks applications typed in one by one
    (each stored as a one-row batch) apart from those of weekly batch files."""
    r, h = portfolio_rollup.c, probability_rollup.c
    typed_in = batches.c.file_name.like(f"{TYPED_IN_PREFIX}%").label("typed_in")
    cols = [r.week_start, r.band, r.status, r.kind, typed_in]
    if segment_key is not None:
        cols.append(r[segment_key].label("segment"))
    q = (select(*cols, func.sum(r.n).label("n"), func.sum(r.amount).label("amount"),
                func.sum(r.expected_profit).label("expected_profit"))
         .select_from(portfolio_rollup.join(batches, batches.c.id == r.batch_id))
         .where(and_(r.n != 0, *_where(portfolio_rollup, segment_keys, f))).group_by(*cols)
         .having(func.sum(r.n) > 0))
    hq = (select(h.bin, func.sum(h.n)).where(and_(True, *_where(probability_rollup, segment_keys, f)))
          .group_by(h.bin))
    rows = conn.execute(q).all()
    hist = conn.execute(hq).all()
    groups = pd.DataFrame(
        [tuple(x) for x in rows],
        columns=["week_start", "band", "status", "kind", "typed_in", *(["segment"] if segment_key else []),
                 "n", "amount", "expected_profit"],
    )
    groups["typed_in"] = groups["typed_in"].astype(bool)
    if segment_key is not None:
        groups["segment"] = groups["segment"].replace("", None)
    counts = dict.fromkeys(range(HIST_BINS), 0)
    for b, n in hist:
        counts[int(b)] += int(n)
    histogram = pd.DataFrame({"bin_start": [i / HIST_BINS for i in counts],
                              "bin_end": [(i + 1) / HIST_BINS for i in counts], "n": list(counts.values())})
    return groups, histogram


@dataclass(frozen=True)
class BatchOption:
    id: str
    file_name: str
    week_start: str


def weeks_and_batches(conn: Connection, limit: int = 500) -> tuple[list[str], list[BatchOption]]:
    live = batches.c.state == BatchState.PUBLISHED
    weeks = list(conn.execute(select(batches.c.week_start).where(live).distinct()
                              .order_by(batches.c.week_start)).scalars())
    rows = conn.execute(select(batches.c.id, batches.c.file_name, batches.c.week_start).where(live)
                        .order_by(batches.c.uploaded_at.desc()).limit(limit)).all()
    return weeks, [BatchOption(*r) for r in rows]
