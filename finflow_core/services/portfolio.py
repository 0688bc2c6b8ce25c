"""The manager's portfolio: figures computed by the database, not by loading every row.

The roll-up tables (kept in step by every batch and decision, see ``rollup``) hold counts,
amounts and expected profit per week, batch, band, status, decision kind and segment; the
page's figures are one GROUP BY over them, whatever the number of applications.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import and_, func, select

from finflow_core.lending.config import Config
from finflow_core.services.access import require
from finflow_core.services.auth import Principal
from finflow_core.store import Store
from finflow_core.store.lending_tables import batches, portfolio_rollup, probability_rollup
from finflow_core.store.rollup import HIST_BINS


@dataclass(frozen=True)
class PortfolioFilter:
    """Which applications to include; empty means all."""

    week_from: str | None = None  # YYYY-MM-DD, inclusive
    week_to: str | None = None
    batch_ids: tuple[str, ...] = ()
    segments: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> allowed values


@dataclass
class PortfolioSummary:
    groups: pd.DataFrame  # week_start, band, status, kind, segment, n, amount, expected_profit
    histogram: pd.DataFrame  # bin_start, bin_end, n
    segment: str | None
    automation_target: float

    @property
    def total(self) -> int:
        return int(self.groups["n"].sum()) if not self.groups.empty else 0

    def kpis(self) -> dict[str, float]:
        """Headline figures of everything selected."""
        return {**_figures(self.groups), "automation_target": self.automation_target}

    def by(self, *keys: str) -> pd.DataFrame:
        """Counts, amounts and expected profit grouped by any of week_start, band, status, kind, segment."""
        if self.groups.empty:
            return pd.DataFrame(columns=[*keys, "n", "amount", "expected_profit"])
        return self.groups.groupby(list(keys), dropna=False)[["n", "amount", "expected_profit"]].sum().reset_index()

    def weekly(self) -> pd.DataFrame:
        """Week by week: applications, approvals, automation rate, expected profit, ROI."""
        rows = [{"week_start": week, **_figures(w)} for week, w in self.groups.groupby("week_start")]
        return pd.DataFrame(rows, columns=["week_start", *WEEKLY_COLUMNS])


WEEKLY_COLUMNS = ("applications", "approved", "declined", "pending", "referred", "automation_rate",
                  "auto_decisions", "expected_profit", "amount_approved", "roi", "approval_rate")


def _figures(g: pd.DataFrame) -> dict[str, float]:
    """The portfolio's figures for a set of roll-up groups (one rule for totals and weeks)."""
    n = int(g["n"].sum()) if not g.empty else 0
    if n == 0:
        return dict.fromkeys(WEEKLY_COLUMNS, 0)
    by_status = g.groupby("status")["n"].sum()
    approved_amount = float(g.loc[g["status"] == "approved", "amount"].sum())
    profit = float(g["expected_profit"].sum())
    return {
        "applications": n,
        "approved": int(by_status.get("approved", 0)),
        "declined": int(by_status.get("declined", 0)),
        "pending": int(by_status.get("pending", 0)),
        "referred": int(by_status.get("referred", 0)),
        # decided without a person: the low and high bands (every one of them is automatic)
        "automation_rate": float(g.loc[g["band"] != "medium", "n"].sum() / n),
        "auto_decisions": int(g.loc[g["kind"] == "auto", "n"].sum()),
        "expected_profit": profit,
        "amount_approved": approved_amount,
        "roi": profit / approved_amount if approved_amount else 0.0,
        "approval_rate": float(by_status.get("approved", 0) / n),
    }


def _segment_key(config: Config, name: str | None) -> str | None:
    if name is None:
        return None
    try:
        return f"segment_{config.segments.index(name) + 1}"
    except ValueError:
        raise ValueError(f"{name!r} is not a portfolio segment; choose from {', '.join(config.segments)}") from None


def _where(table: Any, config: Config, f: PortfolioFilter) -> list[Any]:
    c = table.c
    conds: list[Any] = []
    if f.week_from:
        conds.append(c.week_start >= f.week_from)
    if f.week_to:
        conds.append(c.week_start <= f.week_to)
    if f.batch_ids:
        conds.append(c.batch_id.in_(f.batch_ids))
    for name, values in f.segments.items():
        if values:
            conds.append(c[_segment_key(config, name)].in_(values))
    return conds


def portfolio_summary(
    store: Store, actor: Principal, config: Config, filt: PortfolioFilter | None = None,
    segment: str | None = None,
) -> PortfolioSummary:
    """Grouped portfolio figures (and a probability histogram) for the filtered applications."""
    require(actor, "view_portfolio")
    f = filt or PortfolioFilter()
    r, h = portfolio_rollup.c, probability_rollup.c
    key = _segment_key(config, segment)
    cols = [r.week_start, r.band, r.status, r.kind]
    if key is not None:
        cols.append(r[key].label("segment"))
    q = (select(*cols, func.sum(r.n).label("n"), func.sum(r.amount).label("amount"),
                func.sum(r.expected_profit).label("expected_profit"))
         .where(and_(r.n != 0, *_where(portfolio_rollup, config, f))).group_by(*cols)
         .having(func.sum(r.n) > 0))
    hq = (select(h.bin, func.sum(h.n)).where(and_(True, *_where(probability_rollup, config, f)))
          .group_by(h.bin))
    with store.connect(snapshot=True) as conn:
        rows = conn.execute(q).all()
        hist = conn.execute(hq).all()
    groups = pd.DataFrame(
        [tuple(x) for x in rows],
        columns=["week_start", "band", "status", "kind", *(["segment"] if key is not None else []),
                 "n", "amount", "expected_profit"],
    )
    if key is not None:
        groups["segment"] = groups["segment"].replace("", None)
    counts = dict.fromkeys(range(HIST_BINS), 0)
    for b, n in hist:
        counts[int(b)] += int(n)
    histogram = pd.DataFrame({"bin_start": [i / HIST_BINS for i in counts],
                              "bin_end": [(i + 1) / HIST_BINS for i in counts],
                              "n": list(counts.values())})
    return PortfolioSummary(groups, histogram, segment, config.strategy.automation_target)


def filter_options(store: Store, actor: Principal, config: Config) -> dict[str, Any]:
    """Values the portfolio filters offer: weeks, batches, and each segment's categories."""
    require(actor, "view_portfolio")
    with store.connect() as conn:
        weeks = list(conn.execute(select(batches.c.week_start).distinct().order_by(batches.c.week_start)).scalars())
        batch_rows = conn.execute(select(batches.c.id, batches.c.file_name, batches.c.week_start)
                                  .order_by(batches.c.uploaded_at.desc()).limit(500)).all()
    segments = {}
    for name in config.segments:
        col = config.column(name)
        segments[name] = list(col.categories)
    return {"weeks": weeks, "batches": [{"id": r.id, "file_name": r.file_name, "week_start": r.week_start}
                                        for r in batch_rows], "segments": segments}
