"""Decision strategy: from probabilities of default to profit-maximising decisions.

Economics of one loan (amount A, annual rate r, term n months, amortising monthly):
  * repaid: earns its interest over the term less the cost of funding the same balance;
  * default: loses loss-given-default x A.
A credit officer reviewing a case declines a share of would-be defaulters (and, by
mistake, a share of good applicants) at the cost of the review. The strategy picks the
profit-optimal single cut-off and the two band edges that meet the automation target
while giving up as little profit as possible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from finflow_core.lending.config import Config, Economics
from finflow_core.lending.terms import BAND_RECOMMENDATION, BANDS, Band

LOW, MEDIUM, HIGH = Band.LOW, Band.MEDIUM, Band.HIGH
BAND_DECISION = BAND_RECOMMENDATION


def amortised_interest(amount: np.ndarray, annual_rate: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Total interest paid on a monthly amortising loan."""
    amount = np.asarray(amount, dtype=float)
    m = np.asarray(annual_rate, dtype=float) / 12.0
    n = np.asarray(months, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        payment = np.where(m > 0, amount * m / (1.0 - (1.0 + m) ** (-n)), amount / n)
    return payment * n - amount


@dataclass(frozen=True)
class LoanValues:
    """Per-application money at stake, computed once from the batch."""

    margin: np.ndarray  # profit if repaid
    loss: np.ndarray  # loss if it defaults
    amount: np.ndarray

    @classmethod
    def from_frame(cls, df: pd.DataFrame, config: Config) -> LoanValues:
        amount = df[config.amount_column].to_numpy(dtype=float)
        rate = df[config.rate_column].to_numpy(dtype=float)
        term = df[config.term_column].to_numpy(dtype=float)
        return cls.compute(amount, rate, term, config.economics)

    @classmethod
    def compute(
        cls, amount: np.ndarray, rate: np.ndarray, term: np.ndarray, eco: Economics
    ) -> LoanValues:
        margin = amortised_interest(amount, rate, term) - amortised_interest(
            amount, np.full_like(amount, eco.cost_of_funds), term
        )
        return cls(margin=margin, loss=eco.loss_given_default * amount, amount=amount)


def expected_values(p: np.ndarray, v: LoanValues, eco: Economics) -> tuple[np.ndarray, np.ndarray]:
    """Expected profit of approving, and of sending to review, for each application."""
    approve = (1 - p) * v.margin - p * v.loss
    review = (
        (1 - p) * (1 - eco.review_good_decline) * v.margin
        - p * (1 - eco.review_default_detection) * v.loss
        - eco.review_cost
    )
    return approve, review


def realised_values(y: np.ndarray, v: LoanValues, eco: Economics) -> tuple[np.ndarray, np.ndarray]:
    """Profit actually made by approving, and (expected over the officer) by reviewing."""
    y = np.asarray(y, dtype=float)
    approve = (1 - y) * v.margin - y * v.loss
    review = (
        (1 - y) * (1 - eco.review_good_decline) * v.margin
        - y * (1 - eco.review_default_detection) * v.loss
        - eco.review_cost
    )
    return approve, review


@dataclass(frozen=True)
class Strategy:
    """Cut-off, band edges and the figures they were chosen by."""

    cutoff: float
    low_edge: float  # p < low_edge: auto-approve
    high_edge: float  # p >= high_edge: auto-decline
    automation_target: float
    automation_rate: float
    profit: float  # out-of-fold profit of the banded policy
    profit_cutoff_only: float  # out-of-fold profit of deciding everything at the cut-off
    profit_all_reviewed: float
    roi: float
    band_shares: dict[str, float] = field(default_factory=dict)
    curve: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Strategy:
        return cls(**d)

    def with_edges(self, low_edge: float, high_edge: float) -> Strategy:
        if not 0 <= low_edge <= high_edge <= 1:
            raise ValueError("band edges need 0 <= low edge <= high edge <= 1")
        return Strategy(**{**self.to_dict(), "low_edge": float(low_edge), "high_edge": float(high_edge)})


def assign_bands(p: np.ndarray, low_edge: float, high_edge: float) -> np.ndarray:
    """Band per probability: low below ``low_edge``, high at or above ``high_edge``."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, MEDIUM, dtype=object)
    out[p < low_edge] = LOW
    out[p >= high_edge] = HIGH
    return out


def profit_curve(
    p: np.ndarray, y: np.ndarray, v: LoanValues, eco: Economics, thresholds: np.ndarray
) -> pd.DataFrame:
    """Out-of-fold profit of approving every application with p below each threshold."""
    approve_real, _ = realised_values(y, v, eco)
    approve_exp, _ = expected_values(p, v, eco)
    order = np.argsort(p, kind="stable")
    ps = p[order]
    cum_real = np.concatenate([[0.0], np.cumsum(approve_real[order])])
    cum_exp = np.concatenate([[0.0], np.cumsum(approve_exp[order])])
    cum_amt = np.concatenate([[0.0], np.cumsum(v.amount[order])])
    k = np.searchsorted(ps, thresholds, side="left")  # number approved (p < threshold)
    n = len(p)
    return pd.DataFrame(
        {
            "threshold": thresholds,
            "approval_rate": k / n,
            "profit": cum_real[k],
            "expected_profit": cum_exp[k],
            "amount_approved": cum_amt[k],
        }
    )


def fit_strategy(p: np.ndarray, y: np.ndarray, v: LoanValues, config: Config) -> Strategy:
    """Choose the cut-off and band edges from out-of-fold probabilities and outcomes."""
    eco, target = config.economics, config.strategy.automation_target
    p = np.asarray(p, dtype=float)
    y = np.asarray(y, dtype=int)
    n = len(p)
    grid = _threshold_grid(p, config.strategy.candidate_thresholds)
    curve = profit_curve(p, y, v, eco, grid)
    best = int(np.argmax(curve["profit"].to_numpy()))
    cutoff = float(grid[best])

    approve_real, review_real = realised_values(y, v, eco)
    order = np.argsort(p, kind="stable")
    ps = p[order]
    cum_a = np.concatenate([[0.0], np.cumsum(approve_real[order])])
    cum_r = np.concatenate([[0.0], np.cumsum(review_real[order])])
    k = np.searchsorted(ps, grid, side="left")  # rows with p < edge
    # candidate (low, high) pairs: profit = approve below low + review between
    lo_k, hi_k = np.meshgrid(k, k, indexing="ij")
    valid = hi_k >= lo_k
    medium_share = (hi_k - lo_k) / n
    profit = cum_a[lo_k] + cum_r[hi_k] - cum_r[lo_k]
    feasible = valid & (1 - medium_share >= target - 1e-12)
    profit_masked = np.where(feasible, profit, -np.inf)
    i, j = np.unravel_index(int(np.argmax(profit_masked)), profit_masked.shape)
    low_edge, high_edge = float(grid[i]), float(grid[j])
    bands = assign_bands(p, low_edge, high_edge)
    shares = {b: round(float(np.mean(bands == b)), 4) for b in BANDS}
    lent = float(v.amount[bands == LOW].sum() + (1 - eco.review_good_decline) * v.amount[bands == MEDIUM].sum())
    banded_profit = float(profit[i, j])
    return Strategy(
        cutoff=cutoff,
        low_edge=low_edge,
        high_edge=high_edge,
        automation_target=target,
        automation_rate=round(1 - shares[MEDIUM], 4),
        profit=round(banded_profit, 2),
        profit_cutoff_only=round(float(curve["profit"].iloc[best]), 2),
        profit_all_reviewed=round(float(cum_r[-1]), 2),
        roi=round(banded_profit / lent, 4) if lent > 0 else 0.0,
        band_shares=shares,
        curve={
            "threshold": [float(t) for t in curve["threshold"]],
            "profit": [round(float(x), 2) for x in curve["profit"]],
            "approval_rate": [round(float(x), 4) for x in curve["approval_rate"]],
        },
    )


def evaluate_edges(
    p: np.ndarray, v: LoanValues, eco: Economics, low_edge: float, high_edge: float
) -> dict[str, float]:
    """Expected automation rate, profit and ROI of given band edges (the what-if)."""
    bands = assign_bands(p, low_edge, high_edge)
    approve, review = expected_values(p, v, eco)
    low, med = bands == LOW, bands == MEDIUM
    profit = float(approve[low].sum() + review[med].sum())
    lent = float(v.amount[low].sum() + (1 - eco.review_good_decline) * v.amount[med].sum())
    return {
        "automation_rate": float(1 - med.mean()) if len(p) else 0.0,
        "expected_profit": profit,
        "roi": profit / lent if lent > 0 else 0.0,
        "share_low": float(low.mean()) if len(p) else 0.0,
        "share_medium": float(med.mean()) if len(p) else 0.0,
        "share_high": float((bands == HIGH).mean()) if len(p) else 0.0,
    }


def _threshold_grid(p: np.ndarray, size: int) -> np.ndarray:
    qs = np.quantile(p, np.linspace(0, 1, max(size, 3)))
    return np.unique(np.concatenate([[0.0], qs, [np.nextafter(1.0, 2.0)]]))
