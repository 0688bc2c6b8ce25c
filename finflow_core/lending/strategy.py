"""Decision strategy: from probabilities of default to profit-maximising decisions.

Economics of one loan (amount A, annual rate r, term n months, amortising monthly):
  * repaid: earns its interest over the term less the cost of funding the same balance;
  * default: loses loss-given-default x A.
A credit officer reviewing a case declines a share of would-be defaulters (and, by
mistake, a share of good applicants) at the cost of the review. The strategy picks the
cut-off and the two band edges that meet the automation target while giving up as little
profit as possible.

The rate and term come from the file, or from the config (assumed figures: a product
rate, or a rate by band: approvals earn the low-band rate, reviewed loans the medium).
The cut-off is the profit-optimal one (``strategy.cutoff.by: profit``), or meets a
target: the most approvals whose bad rate stays within ``max_bad_rate``, or the share of
applications ``approval_rate``. Without any pricing there is no profit to report; the
band edges are then placed with the margin the target implies (at the cut-off, a good
loan's margin equals a bad loan's expected loss: ``margin = loss * c / (1 - c)``).
"""

from __future__ import annotations

import dataclasses
import math
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
    """Per-application money at stake, computed once from the batch.

    ``margin`` is the profit of a repaid loan approved automatically; ``margin_review``,
    when pricing is by band, that of a loan approved after review. Without pricing the
    margins are NaN (``priced`` False): nothing is made up.
    """

    margin: np.ndarray  # profit if repaid
    loss: np.ndarray  # loss if it defaults
    amount: np.ndarray
    margin_review: np.ndarray | None = None
    priced: bool = True

    @property
    def review_margin(self) -> np.ndarray:
        return self.margin if self.margin_review is None else self.margin_review

    @classmethod
    def from_frame(cls, df: pd.DataFrame, config: Config) -> LoanValues:
        """The batch's loans priced as the config says (file columns or assumed figures)."""
        plan, eco = config.pricing, config.economics
        amount = df[config.amount_column].to_numpy(dtype=float)
        if not plan.priced:
            return cls(np.full(len(amount), np.nan), eco.loss_given_default * amount, amount,
                       priced=False)
        term = (df[plan.term_column].to_numpy(dtype=float) if plan.term_column
                else np.full(len(amount), float(plan.term_months)))
        if plan.rate_by_band is not None:
            low = cls.compute(amount, np.full(len(amount), plan.rate_by_band.low), term, eco)
            medium = cls.compute(amount, np.full(len(amount), plan.rate_by_band.medium), term, eco)
            return dataclasses.replace(low, margin_review=medium.margin)
        rate = (df[plan.rate_column].to_numpy(dtype=float) if plan.rate_column
                else np.full(len(amount), float(plan.interest_rate)))
        return cls.compute(amount, rate, term, eco)

    @classmethod
    def compute(
        cls, amount: np.ndarray, rate: np.ndarray, term: np.ndarray, eco: Economics
    ) -> LoanValues:
        margin = amortised_interest(amount, rate, term) - amortised_interest(
            amount, np.full_like(amount, eco.cost_of_funds), term
        )
        return cls(margin=margin, loss=eco.loss_given_default * amount, amount=amount)

    def implied(self, cutoff: float) -> LoanValues:
        """Margins a cut-off implies when nothing is priced: break-even at the cut-off."""
        c = min(max(float(cutoff), 0.0), 1 - 1e-6)
        return LoanValues(self.loss * c / (1 - c), self.loss, self.amount, priced=False)


def expected_values(p: np.ndarray, v: LoanValues, eco: Economics) -> tuple[np.ndarray, np.ndarray]:
    """Expected profit of approving, and of sending to review, for each application."""
    approve = (1 - p) * v.margin - p * v.loss
    review = (
        (1 - p) * (1 - eco.review_good_decline) * v.review_margin
        - p * (1 - eco.review_default_detection) * v.loss
        - eco.review_cost
    )
    return approve, review


def realised_values(y: np.ndarray, v: LoanValues, eco: Economics) -> tuple[np.ndarray, np.ndarray]:
    """Profit actually made by approving, and (expected over the officer) by reviewing."""
    y = np.asarray(y, dtype=float)
    approve = (1 - y) * v.margin - y * v.loss
    review = (
        (1 - y) * (1 - eco.review_good_decline) * v.review_margin
        - y * (1 - eco.review_default_detection) * v.loss
        - eco.review_cost
    )
    return approve, review


@dataclass(frozen=True, eq=False)
class Strategy:
    """Cut-off, band edges and the figures they were chosen by.

    Profit figures are NaN when nothing is priced. ``score_min``/``score_max`` are the
    range of the out-of-fold scores the edges were chosen on: an edge at or beyond them
    means a band (next to) no application falls in (:attr:`never_declines`,
    :attr:`never_approves`).
    """

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
    cutoff_method: str = "profit"  # profit | max_bad_rate | approval_rate
    cutoff_target: float | None = None
    cutoff_approval_rate: float = math.nan  # out-of-fold share with p below the cut-off
    cutoff_bad_rate: float = math.nan  # their realised default rate
    score_min: float = 0.0
    score_max: float = 1.0
    priced: bool = True
    assumed: tuple[str, ...] = ()  # pricing figures that were assumptions (from config)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __eq__(self, other: object) -> bool:
        # NaN profits (nothing priced) are equal to themselves here: a saved strategy
        # loaded again is the same strategy
        if not isinstance(other, Strategy):
            return NotImplemented
        return _same(self.to_dict(), other.to_dict())

    __hash__ = None  # type: ignore[assignment]  # it holds dicts: never a dict key

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Strategy:
        d = dict(d)
        if "assumed" in d:
            d["assumed"] = tuple(d["assumed"])
        return cls(**d)

    def with_edges(self, low_edge: float, high_edge: float) -> Strategy:
        if not 0 <= low_edge <= high_edge <= 1:
            raise ValueError("band edges need 0 <= low edge <= high edge <= 1")
        return Strategy(**{**self.to_dict(), "low_edge": float(low_edge), "high_edge": float(high_edge)})

    @property
    def never_declines(self) -> bool:
        """The high band starts at the top of the out-of-fold scores: (next to) nothing is declined."""
        return self.high_edge >= self.score_max

    @property
    def never_approves(self) -> bool:
        """No out-of-fold score is below the low band's edge: nothing is approved automatically."""
        return self.low_edge <= self.score_min

    @property
    def warning(self) -> str | None:
        """One line for a person when the bands leave out a decision entirely."""
        parts = []
        if self.never_declines:
            why = f"; check the assumed pricing ({', '.join(self.assumed)})" if self.assumed else ""
            parts.append(f"this strategy never declines: the high-band edge {self.high_edge:.3f} "
                         f"is at the top of the out-of-fold scores (highest {self.score_max:.3f})"
                         f"{why}")
        if self.never_approves:
            parts.append(f"this strategy never approves automatically: the low-band edge "
                         f"{self.low_edge:.3f} is at or below every out-of-fold score (lowest "
                         f"{self.score_min:.3f})")
        return "; ".join(parts) or None

    @property
    def objective(self) -> float:
        """What candidate models are compared by (higher is better), as the cut-off rule says."""
        if self.cutoff_method == "max_bad_rate":
            return self.cutoff_approval_rate
        if self.cutoff_method == "approval_rate":
            return -self.cutoff_bad_rate
        return self.profit


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


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
    rule = config.strategy.cutoff
    p = np.asarray(p, dtype=float)
    y = np.asarray(y, dtype=int)
    n = len(p)
    grid = _threshold_grid(p, config.strategy.candidate_thresholds)
    curve = profit_curve(p, y, v, eco, grid)
    order = np.argsort(p, kind="stable")
    ps = p[order]
    k = np.searchsorted(ps, grid, side="left")  # rows with p < edge
    bad_rate = _bad_rates(y[order], k)
    if rule.by == "profit":
        best = int(np.argmax(curve["profit"].to_numpy()))
    else:
        best = choose_cutoff(rule.by, float(rule.value), curve["approval_rate"].to_numpy(), bad_rate)
    cutoff = float(grid[best])
    banded_values = v if v.priced else v.implied(cutoff)

    approve_real, review_real = realised_values(y, banded_values, eco)
    cum_a = np.concatenate([[0.0], np.cumsum(approve_real[order])])
    cum_r = np.concatenate([[0.0], np.cumsum(review_real[order])])
    # candidate (low, high) pairs: profit = approve below low + review between
    lo_k, hi_k = np.meshgrid(k, k, indexing="ij")
    valid = hi_k >= lo_k
    medium_share = (hi_k - lo_k) / n
    profit = cum_a[lo_k] + cum_r[hi_k] - cum_r[lo_k]
    feasible = valid & (1 - medium_share >= target - 1e-12)
    if rule.by != "profit":  # the bands keep the chosen cut-off inside the review band
        lo_g, hi_g = np.meshgrid(grid, grid, indexing="ij")
        feasible &= (lo_g <= cutoff) & (hi_g >= cutoff)
    profit_masked = np.where(feasible, profit, -np.inf)
    i, j = np.unravel_index(int(np.argmax(profit_masked)), profit_masked.shape)
    low_edge, high_edge = float(grid[i]), float(grid[j])
    bands = assign_bands(p, low_edge, high_edge)
    shares = {b: round(float(np.mean(bands == b)), 4) for b in BANDS}
    lent = float(v.amount[bands == LOW].sum() + (1 - eco.review_good_decline) * v.amount[bands == MEDIUM].sum())
    banded_profit = float(profit[i, j]) if v.priced else math.nan
    return Strategy(
        cutoff=cutoff,
        low_edge=low_edge,
        high_edge=high_edge,
        automation_target=target,
        automation_rate=round(1 - shares[MEDIUM], 4),
        profit=round(banded_profit, 2),
        profit_cutoff_only=round(float(curve["profit"].iloc[best]), 2),
        profit_all_reviewed=round(float(cum_r[-1]), 2) if v.priced else math.nan,
        roi=round(banded_profit / lent, 4) if lent > 0 else 0.0,
        band_shares=shares,
        curve={
            "threshold": [float(t) for t in curve["threshold"]],
            "profit": [round(float(x), 2) for x in curve["profit"]],
            "approval_rate": [round(float(x), 4) for x in curve["approval_rate"]],
            "bad_rate": [round(float(x), 4) for x in bad_rate],
        },
        cutoff_method=rule.by,
        cutoff_target=rule.value,
        cutoff_approval_rate=round(float(curve["approval_rate"].iloc[best]), 4),
        cutoff_bad_rate=round(float(bad_rate[best]), 4),
        score_min=float(p.min()) if n else 0.0,
        score_max=float(p.max()) if n else 1.0,
        priced=v.priced,
        assumed=tuple(sorted(config.pricing.assumed)),
    )


def choose_cutoff(by: str, value: float, approval_rate: np.ndarray, bad_rate: np.ndarray) -> int:
    """Index of the grid threshold that meets a target.

    ``max_bad_rate``: the most approvals whose realised bad rate stays within ``value``;
    ``approval_rate``: the fewest approvals reaching ``value`` of applications.
    """
    if by == "max_bad_rate":
        ok = np.flatnonzero(bad_rate <= value + 1e-12)
        return int(ok.max())  # approving nobody (threshold 0) always qualifies
    if by == "approval_rate":
        reached = np.flatnonzero(approval_rate >= value - 1e-12)
        return int(reached.min()) if len(reached) else len(approval_rate) - 1
    raise ValueError(f"unknown cut-off rule {by!r}")


def _bad_rates(y_sorted: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Realised default rate of the applications approved at each threshold."""
    cum = np.concatenate([[0], np.cumsum(y_sorted)])
    return cum[k] / np.maximum(k, 1)  # approving nobody: no defaults (0.0)


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
        "expected_profit": profit,  # NaN when nothing is priced
        "roi": profit / lent if lent > 0 else 0.0,
        "share_low": float(low.mean()) if len(p) else 0.0,
        "share_medium": float(med.mean()) if len(p) else 0.0,
        "share_high": float((bands == HIGH).mean()) if len(p) else 0.0,
        # expected default rate of the automatic approvals: the figure without pricing
        "expected_bad_rate_approved": float(p[low].mean()) if low.any() else 0.0,
    }


def _threshold_grid(p: np.ndarray, size: int) -> np.ndarray:
    qs = np.quantile(p, np.linspace(0, 1, max(size, 3)))
    return np.unique(np.concatenate([[0.0], qs, [np.nextafter(1.0, 2.0)]]))
