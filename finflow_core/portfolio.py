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

from finflow_core.auth import Principal
from finflow_core.config import Config
from finflow_core.permissions import require
from finflow_core.rollup import HIST_BINS
from finflow_core.store import Store
from finflow_core.store.lending_tables import batches, portfolio_rollup, probability_rollup


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
        g = self.groups
        if g.empty:
            return {"applications": 0, "approved": 0, "declined": 0, "pending": 0, "referred": 0,
                    "automation_rate": 0.0, "expected_profit": 0.0, "amount_approved": 0.0, "roi": 0.0,
                    "approval_rate": 0.0, "automation_target": self.automation_target}
        n = g["n"].sum()
        by_status = g.groupby("status")["n"].sum()
        approved_amount = g.loc[g["status"] == "approved", "amount"].sum()
        profit = g["expected_profit"].sum()
        auto = g.loc[g["kind"] == "auto", "n"].sum()
        automated_by_band = g.loc[g["band"] != "medium", "n"].sum()
        return {
            "applications": int(n),
            "approved": int(by_status.get("approved", 0)),
            "declined": int(by_status.get("declined", 0)),
            "pending": int(by_status.get("pending", 0)),
            "referred": int(by_status.get("referred", 0)),
            # decided without a person: the low and high bands (every one of them is automatic)
            "automation_rate": float(automated_by_band / n),
            "auto_decisions": int(auto),
            "expected_profit": float(profit),
            "amount_approved": float(approved_amount),
            "roi": float(profit / approved_amount) if approved_amount else 0.0,
            "approval_rate": float(by_status.get("approved", 0) / n),
            "automation_target": self.automation_target,
        }

    def by(self, *keys: str) -> pd.DataFrame:
        """Counts, amounts and expected profit grouped by any of week_start, band, status, kind, segment."""
        if self.groups.empty:
            return pd.DataFrame(columns=[*keys, "n", "amount", "expected_profit"])
        return self.groups.groupby(list(keys), dropna=False)[["n", "amount", "expected_profit"]].sum().reset_index()

    def weekly(self) -> pd.DataFrame:
        """Week by week: applications, approvals, automation rate, expected profit, ROI."""
        g = self.groups
        if g.empty:
            return pd.DataFrame(columns=["week_start", "applications", "approved", "declined", "pending",
                                         "automation_rate", "expected_profit", "amount_approved", "roi"])
        rows = []
        for week, w in g.groupby("week_start"):
            n = w["n"].sum()
            approved = w.loc[w["status"] == "approved"]
            amount = approved["amount"].sum()
            profit = w["expected_profit"].sum()
            rows.append({
                "week_start": week, "applications": int(n), "approved": int(approved["n"].sum()),
                "declined": int(w.loc[w["status"] == "declined", "n"].sum()),
                "pending": int(w.loc[w["status"].isin(["pending", "referred"]), "n"].sum()),
                "automation_rate": float(w.loc[w["band"] != "medium", "n"].sum() / n),
                "expected_profit": float(profit), "amount_approved": float(amount),
                "roi": float(profit / amount) if amount else 0.0,
            })
        return pd.DataFrame(rows)


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
