"""The manager's portfolio: risk distribution, decisions, automation, expected profit, trends."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from finflow_core.errors import InvalidInput
from finflow_core.lending.config import Config
from finflow_core.lending.terms import Band, DecisionKind, Status
from finflow_core.services.access import Action
from finflow_core.services.base import Service
from finflow_core.store import portfolio_queries as queries
from finflow_core.store.portfolio_queries import BatchOption, PortfolioFilter

__all__ = ["FilterOptions", "PortfolioFilter", "PortfolioService", "PortfolioSummary"]

WEEKLY_COLUMNS = ("applications", "approved", "declined", "pending", "referred", "automation_rate",
                  "auto_decisions", "expected_profit", "amount_approved", "roi", "approval_rate")


@dataclass
class PortfolioSummary:
    groups: pd.DataFrame  # week_start, band, status, kind, typed_in, [segment], n, amount, expected_profit
    histogram: pd.DataFrame  # bin_start, bin_end, n
    segment: str | None
    automation_target: float

    @property
    def total(self) -> int:
        return int(self.groups["n"].sum()) if not self.groups.empty else 0

    def kpis(self) -> dict[str, float]:
        """Headline figures of everything selected."""
        return {**figures(self.groups), "automation_target": self.automation_target}

    def by(self, *keys: str) -> pd.DataFrame:
        """Counts, amounts and expected profit grouped by week_start, band, status, kind or segment."""
        if self.groups.empty:
            return pd.DataFrame(columns=[*keys, "n", "amount", "expected_profit"])
        return (self.groups.groupby(list(keys), dropna=False)[["n", "amount", "expected_profit"]]
                .sum().reset_index())

    def weekly(self, *, typed_in: bool = False) -> pd.DataFrame:
        """Week by week: applications, approvals, automation rate, expected profit, ROI.

        Of the weekly batch files only (``typed_in=True``: of the applications typed in one
        by one instead). A week's trend is a population's: two applications typed in for a
        week without a batch would otherwise read as a week of 2 applications, all decided
        automatically. The totals (:meth:`kpis`) count everything.
        """
        part = self.groups[self.groups["typed_in"] == typed_in] if "typed_in" in self.groups else self.groups
        rows = [{"week_start": week, **figures(w)} for week, w in part.groupby("week_start")]
        return pd.DataFrame(rows, columns=["week_start", *WEEKLY_COLUMNS])

    @property
    def typed_in_total(self) -> int:
        """How many of the applications were typed in one by one."""
        if self.groups.empty or "typed_in" not in self.groups:
            return 0
        return int(self.groups.loc[self.groups["typed_in"], "n"].sum())


def figures(g: pd.DataFrame) -> dict[str, float]:
    """The portfolio's figures for a set of roll-up groups (one rule for totals and weeks)."""
    n = int(g["n"].sum()) if not g.empty else 0
    if n == 0:
        return {**dict.fromkeys(WEEKLY_COLUMNS, 0), "awaiting_decision": 0}
    by_status = g.groupby("status")["n"].sum()
    approved_amount = float(g.loc[g["status"] == Status.APPROVED, "amount"].sum())
    profit = float(g["expected_profit"].sum())
    return {
        "applications": n,
        "approved": int(by_status.get(Status.APPROVED, 0)),
        "declined": int(by_status.get(Status.DECLINED, 0)),
        "pending": int(by_status.get(Status.PENDING, 0)),
        "referred": int(by_status.get(Status.REFERRED, 0)),
        # pending review and referred: what the queue still has to decide (the rest is decided)
        "awaiting_decision": int(by_status.get(Status.PENDING, 0) + by_status.get(Status.REFERRED, 0)),
        # decided without a person: the low and high bands (every one of them is automatic)
        "automation_rate": float(g.loc[g["band"] != Band.MEDIUM, "n"].sum() / n),
        "auto_decisions": int(g.loc[g["kind"] == DecisionKind.AUTO, "n"].sum()),
        "expected_profit": profit,
        "amount_approved": approved_amount,
        "roi": profit / approved_amount if approved_amount else 0.0,
        "approval_rate": float(by_status.get(Status.APPROVED, 0) / n),
    }


@dataclass(frozen=True)
class FilterOptions:
    """Values the portfolio filters offer."""

    weeks: list[str]
    batches: list[BatchOption]
    segments: dict[str, list[str]] = field(default_factory=dict)


def _segment_keys(config: Config) -> dict[str, str]:
    return {name: f"segment_{i + 1}" for i, name in enumerate(config.segments)}


class PortfolioService(Service):
    """Managers' figures over everything stored (or a filtered part of it)."""

    def summary(self, filt: PortfolioFilter | None = None, segment: str | None = None) -> PortfolioSummary:
        """Grouped portfolio figures (and a probability histogram) for the filtered applications."""
        self.require(Action.VIEW_PORTFOLIO)
        config = self.ctx.config
        keys = _segment_keys(config)
        f = filt or PortfolioFilter()
        for name in [*f.segments, *([segment] if segment else [])]:
            if name not in keys:
                raise InvalidInput(f"{name!r} is not a portfolio segment; choose from "
                                   f"{', '.join(config.segments) or '(none configured)'}", field="segment")
        with self.ctx.store.connect(snapshot=True) as conn:
            groups, histogram = queries.grouped(conn, keys, f, keys.get(segment) if segment else None)
        return PortfolioSummary(groups, histogram, segment, config.strategy.automation_target)

    def filter_options(self) -> FilterOptions:
        self.require(Action.VIEW_PORTFOLIO)
        with self.ctx.store.connect() as conn:
            weeks, batches = queries.weeks_and_batches(conn)
        config = self.ctx.config
        return FilterOptions(weeks, batches, {n: list(config.column(n).categories) for n in config.segments})
