"""How the model really did, once outcomes come back: ranking, calibration, profit by vintage.

A vintage is the set of applications decided together (a batch, or a month). Outcomes exist
only for funded loans, so every figure here is about the loans FinFlow approved: a model
that declines well can look worse on approved loans alone (reject inference and a small
random approval sample are the standard remedies; see docs/LIFECYCLE.md).

Calibration uses the supervisors' traffic light: the number of defaults observed against
the binomial distribution the predicted probability implies (green below 95% confidence that
they differ, amber to 99.9%, red beyond). A probability of default covers the loan's whole
term; a loan observed part-way (``exposure`` = months on book / term below 1) is compared
with PD x exposure, assuming defaults spread evenly over the term. Ranking figures of young
vintages run low (future defaulters still look good), so they are not alerted on until the
vintage has matured enough (:class:`Limits`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import binom
from sklearn.metrics import brier_score_loss, roc_auc_score

from finflow_core.lending.model.metrics import ks_statistic
from finflow_core.lending.terms import BANDS, Light

GREEN_BELOW, RED_ABOVE = 0.95, 0.999
#: fewer funded loans with outcomes than this: no ranking figures (AUC on a handful is noise)
MIN_FOR_RANKING = 30

#: columns a vintage frame carries (one row per stored application)
FRAME_COLUMNS = ("vintage", "probability", "band", "funded", "declined", "defaulted", "amount",
                 "expected_profit", "realised_profit", "expected_loss", "exposure")


@dataclass(frozen=True)
class Calibration:
    """Observed against predicted defaults for one group of funded loans with outcomes."""

    group: str
    n: int
    defaults: int
    predicted_rate: float
    observed_rate: float
    confidence: float  # that the observed rate differs from the predicted one (two-sided)
    light: Light

    @property
    def direction(self) -> str:
        if self.light in (Light.GREEN, Light.NONE):
            return "as predicted"
        return "more defaults than predicted" if self.observed_rate > self.predicted_rate else (
            "fewer defaults than predicted")


def binomial_light(defaults: int, n: int, predicted_rate: float) -> tuple[float, Light]:
    """Confidence that ``defaults`` out of ``n`` differs from ``predicted_rate``, and its light."""
    if n == 0 or not np.isfinite(predicted_rate):
        return 0.0, Light.NONE
    p = float(np.clip(predicted_rate, 1e-9, 1 - 1e-9))
    below = float(binom.cdf(defaults, n, p))  # P(X <= observed)
    above = float(binom.sf(defaults - 1, n, p))  # P(X >= observed)
    p_value = min(1.0, 2 * min(below, above))
    confidence = 1.0 - p_value
    light = Light.GREEN if confidence < GREEN_BELOW else Light.AMBER if confidence <= RED_ABOVE else Light.RED
    return confidence, light


def calibration(group: str, predicted: np.ndarray, outcomes: np.ndarray) -> Calibration:
    n = int(len(outcomes))
    defaults = int(np.sum(outcomes))
    predicted_rate = float(np.mean(predicted)) if n else float("nan")
    confidence, light = binomial_light(defaults, n, predicted_rate)
    return Calibration(group, n, defaults, predicted_rate, defaults / n if n else float("nan"), confidence,
                       light)


@dataclass(frozen=True)
class VintagePerformance:
    """One vintage: what was expected at decision time and what happened so far."""

    vintage: str
    applications: int
    funded: int
    with_outcome: int
    expected_default_rate: float | None  # mean PD of the funded loans (over their whole term)
    expected_loss: float | None  # sum of PD x LGD x amount of the funded loans
    expected_profit: float | None  # of the funded loans, at decision time
    observed_default_rate: float | None
    realised_profit: float | None  # of the funded loans with outcomes
    expected_profit_observed: float | None  # the same loans' expected profit, to compare with
    auc: float | None = None
    gini: float | None = None
    ks: float | None = None
    brier: float | None = None
    overall: Calibration | None = None
    bands: tuple[Calibration, ...] = ()
    declines_with_outcome: int = 0
    decline_precision: float | None = None
    decline_recall: float | None = None
    expected_to_date: float | None = None  # mean PD x exposure of the loans with outcomes
    maturity: float | None = None  # mean exposure of the loans with outcomes (1: all matured)
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def outcome_share(self) -> float:
        return self.with_outcome / self.funded if self.funded else 0.0

    @property
    def light(self) -> Light:
        """The worst light of the overall and per-band tests."""
        lights = [c.light for c in (self.overall, *self.bands) if c is not None and c.light != Light.NONE]
        order = {Light.GREEN: 0, Light.AMBER: 1, Light.RED: 2}
        return max(lights, key=order.__getitem__, default=Light.NONE)


def vintage_performance(vintage: str, frame: pd.DataFrame) -> VintagePerformance:
    """Figures of one vintage from its applications (see :data:`FRAME_COLUMNS`)."""
    funded = frame[frame["funded"].astype(bool)]
    observed = funded[funded["defaulted"].notna()]
    y = observed["defaulted"].to_numpy(dtype=float)
    p = observed["probability"].to_numpy(dtype=float)
    exposure = (observed["exposure"].fillna(1.0).to_numpy(dtype=float) if "exposure" in observed
                else np.ones(len(y)))
    p_to_date = p * exposure
    notes = []
    ranking: dict[str, float | None] = dict.fromkeys(("auc", "gini", "ks", "brier"))
    if len(y) >= MIN_FOR_RANKING and 0 < y.sum() < len(y):
        auc = float(roc_auc_score(y, p))
        ranking = {"auc": auc, "gini": 2 * auc - 1, "ks": ks_statistic(y, p),
                   "brier": float(brier_score_loss(y, p))}
    elif len(y):
        notes.append(f"ranking needs at least {MIN_FOR_RANKING} outcomes with both defaults and "
                     f"repayments; {len(y)} so far")
    band = observed["band"].to_numpy()
    bands = tuple(calibration(str(b), p_to_date[band == b], y[band == b]) for b in BANDS if (band == b).any())
    declined = frame[frame["declined"].astype(bool) & frame["defaulted"].notna()]
    precision = recall = None
    if len(declined):
        precision = float(declined["defaulted"].mean())
        all_defaults = frame.loc[frame["defaulted"].notna(), "defaulted"].sum()
        recall = float(declined["defaulted"].sum() / all_defaults) if all_defaults else None
    else:
        notes.append("declined applications are not funded, so how many of them would have "
                     "defaulted cannot be observed")

    def total(col: str, rows: pd.DataFrame) -> float | None:
        values = rows[col].to_numpy(dtype=float)
        return float(np.nansum(values)) if len(values) and np.isfinite(values).any() else None

    return VintagePerformance(
        vintage=vintage, applications=len(frame), funded=len(funded), with_outcome=len(observed),
        expected_default_rate=float(funded["probability"].mean()) if len(funded) else None,
        expected_loss=total("expected_loss", funded), expected_profit=total("expected_profit", funded),
        observed_default_rate=float(y.mean()) if len(y) else None,
        realised_profit=total("realised_profit", observed),
        expected_profit_observed=total("expected_profit", observed),
        overall=calibration("all", p_to_date, y) if len(y) else None, bands=bands,
        declines_with_outcome=len(declined), decline_precision=precision, decline_recall=recall,
        expected_to_date=float(p_to_date.mean()) if len(y) else None,
        maturity=float(exposure.mean()) if len(y) else None,
        notes=tuple(notes), **ranking,
    )


def by_vintage(frame: pd.DataFrame, key: str = "vintage") -> list[VintagePerformance]:
    """One :class:`VintagePerformance` per value of ``key``, in key order."""
    return [vintage_performance(str(v), part) for v, part in frame.groupby(key, sort=True)]


def vintage_curves(frame: pd.DataFrame, *, thresholds: Iterable[int] = (30, 60, 90)) -> pd.DataFrame:
    """Early delinquency by months on book: the share of each vintage's funded loans that had
    reached 30+ / 60+ / 90+ days past due (or defaulted) by each month observed.

    ``frame`` holds one row per observation: vintage, months_on_book, days_past_due, defaulted,
    and the vintage's number of funded loans (``funded``).
    """
    cols = ["vintage", "months_on_book", "funded", *[f"dpd{t}_plus" for t in thresholds], "defaulted"]
    if frame.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for (vintage, mob), part in frame.groupby(["vintage", "months_on_book"], sort=True):
        funded = int(part["funded"].iloc[0]) or 1
        dpd = part["days_past_due"].fillna(0).to_numpy(dtype=float)
        gone = part["defaulted"].fillna(False).to_numpy(dtype=bool)
        row = {"vintage": vintage, "months_on_book": int(mob), "funded": funded}
        for t in thresholds:
            row[f"dpd{t}_plus"] = float(((dpd >= t) | gone).sum() / funded)
        row["defaulted"] = float(gone.sum() / funded)
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


@dataclass(frozen=True)
class Limits:
    """When ranking or calibration has fallen far enough to alert (config: monitoring)."""

    min_auc: float = 0.70
    max_auc_drop: float = 0.05  # below the model's out-of-fold AUC
    calibration_alert: Light = Light.RED
    min_maturity: float = 0.5  # ranking is judged once loans have run half their term on average


@dataclass(frozen=True)
class PerformanceAlert:
    vintage: str
    kind: str  # "ranking" | "calibration"
    message: str


def truncated_auc(p_ref: np.ndarray, y_ref: np.ndarray, low: float, high: float) -> float | None:
    """AUC of reference scores (a model's out-of-fold ones) within ``[low, high]``: how well it
    ranks loans scored in the range a vintage's funded loans were. Funded loans are the ones
    scored below the decline edge, and AUC within a narrow range of scores runs far below
    the AUC over every applicant; None with too few rows or one outcome only."""
    inside = (p_ref >= low) & (p_ref <= high)
    y = y_ref[inside]
    if len(y) < MIN_FOR_RANKING or not 0 < y.sum() < len(y):
        return None
    return float(roc_auc_score(y, p_ref[inside]))


def performance_alerts(vintages: Iterable[VintagePerformance], limits: Limits,
                       reference_auc: float | Mapping[str, float] | None = None
                       ) -> list[PerformanceAlert]:
    """Alerts for vintages whose ranking power or calibration fell past the limits.

    ``reference_auc`` is one figure for every vintage, or each vintage's own (the model's
    out-of-fold AUC on training loans scored in the range the vintage's funded loans were:
    :func:`truncated_auc`). A vintage with its own is held to it less ``max_auc_drop``, and
    not to ``min_auc``, which is no yardstick for a narrow range of scores (a model ranking
    every applicant at 0.79 ranks the Taiwan file's approve band at 0.61); a vintage without
    one is held to ``min_auc`` only.
    """
    out = []
    order = {Light.GREEN: 0, Light.AMBER: 1, Light.RED: 2, Light.NONE: -1}
    for v in vintages:
        if v.auc is not None and (v.maturity or 0.0) >= limits.min_maturity:
            floor, why = limits.min_auc, ""
            if isinstance(reference_auc, Mapping):
                if v.vintage in reference_auc:
                    reference = reference_auc[v.vintage]
                    floor = reference - limits.max_auc_drop
                    why = (f" (the model's out-of-fold AUC on training loans scored in the same "
                           f"range, {reference:.3f}, less {limits.max_auc_drop:g})")
            elif reference_auc is not None:
                floor = max(floor, reference_auc - limits.max_auc_drop)
            if v.auc < floor:
                out.append(PerformanceAlert(v.vintage, "ranking",
                                            f"AUC {v.auc:.3f} is below {floor:.3f}{why} on "
                                            f"{v.with_outcome:,} funded loans with outcomes"))
        worst = [c for c in (v.overall, *v.bands) if c is not None and c.n > 0
                 and order[c.light] >= order[limits.calibration_alert]]
        for c in worst:
            out.append(PerformanceAlert(
                v.vintage, "calibration",
                f"{c.group} band: {c.observed_rate:.1%} defaulted against {c.predicted_rate:.1%} expected by now "
                f"({c.defaults:,} of {c.n:,}; {c.direction}, {c.light} at {c.confidence:.1%} confidence)"
                if c.group != "all" else
                f"overall: {c.observed_rate:.1%} defaulted against {c.predicted_rate:.1%} expected by now "
                f"({c.defaults:,} of {c.n:,}; {c.direction})"))
    return out


__all__ = ["Calibration", "Limits", "PerformanceAlert", "VintagePerformance", "binomial_light",
           "by_vintage", "calibration", "performance_alerts", "truncated_auc", "vintage_curves",
           "vintage_performance"]
