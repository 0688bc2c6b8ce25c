"""Champion against challenger: a random, reproducible split, and the two arms compared.

An application goes to the challenger arm when a keyed hash of (seed, application key)
falls below the configured share, so the assignment is random, recorded by its seed, and
the same whatever the order or partitioning of the batch. Arms are compared on the same
kind of figures as vintages, each with a confidence interval, because a 10% arm is small.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from finflow_core.lending.terms import Arm

Z95 = float(norm.ppf(0.975))


def assign_arms(keys: Sequence[str], share: float, seed: int) -> np.ndarray:
    """``Arm`` per key: challenger for about ``share`` of them, reproducibly from ``seed``."""
    if not 0 <= share <= 1:
        raise ValueError(f"the challenger share must be between 0 and 1, got {share}")
    salt = int(seed).to_bytes(8, "little", signed=True)
    u = np.fromiter(
        (int.from_bytes(hashlib.blake2b(str(k).encode(), digest_size=8, key=salt).digest(), "little") / 2**64
         for k in keys), dtype=float, count=len(keys))
    return np.where(u < share, Arm.CHALLENGER, Arm.CHAMPION).astype(object)


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (sensible for small arms and rare defaults)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(centre - half), float(centre + half)


def difference_interval(d1: int, n1: int, d2: int, n2: int, z: float = Z95) -> tuple[float, float]:
    """Newcombe's interval for p2 - p1 (from the two Wilson intervals)."""
    if n1 == 0 or n2 == 0:
        return float("nan"), float("nan")
    p1, p2 = d1 / n1, d2 / n2
    l1, u1 = wilson(d1, n1, z)
    l2, u2 = wilson(d2, n2, z)
    diff = p2 - p1
    return (float(diff - np.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)),
            float(diff + np.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)))


@dataclass(frozen=True)
class ArmFigures:
    arm: Arm
    applications: int
    approved: int
    with_outcome: int
    defaults: int
    approval_rate: float
    approval_interval: tuple[float, float]
    default_rate: float | None
    default_interval: tuple[float, float]
    realised_profit_per_loan: float | None
    profit_interval: tuple[float, float]
    auc: float | None
    auc_interval: tuple[float, float]


@dataclass(frozen=True)
class ArmComparison:
    champion: ArmFigures
    challenger: ArmFigures
    default_rate_difference: float | None  # challenger minus champion
    difference_interval: tuple[float, float]

    @property
    def conclusive(self) -> bool:
        """Whether the default-rate difference's interval excludes zero."""
        lo, hi = self.difference_interval
        return bool(np.isfinite(lo) and (lo > 0 or hi < 0))


def arm_figures(arm: Arm, frame: pd.DataFrame, *, seed: int = 0, resamples: int = 400) -> ArmFigures:
    """``frame``: one row per application of the arm: approved (bool), defaulted (float/NaN),
    probability, realised_profit (NaN without an outcome)."""
    n = len(frame)
    approved = int(frame["approved"].astype(bool).sum())
    observed = frame[frame["approved"].astype(bool) & frame["defaulted"].notna()]
    y = observed["defaulted"].to_numpy(dtype=float)
    defaults = int(y.sum())
    profit = observed["realised_profit"].to_numpy(dtype=float)
    profit = profit[np.isfinite(profit)]
    mean_profit = float(profit.mean()) if len(profit) else None
    half = Z95 * float(profit.std(ddof=1)) / np.sqrt(len(profit)) if len(profit) > 1 else float("nan")
    auc, auc_ci = None, (float("nan"), float("nan"))
    if len(y) >= 30 and 0 < defaults < len(y):
        p = observed["probability"].to_numpy(dtype=float)
        auc = float(roc_auc_score(y, p))
        auc_ci = _bootstrap_auc(y, p, seed, resamples)
    return ArmFigures(
        arm, n, approved, len(y), defaults, approved / n if n else float("nan"), wilson(approved, n),
        defaults / len(y) if len(y) else None, wilson(defaults, len(y)), mean_profit,
        (mean_profit - half, mean_profit + half) if mean_profit is not None else (float("nan"),) * 2,
        auc, auc_ci,
    )


def compare_arms(frame: pd.DataFrame, *, seed: int = 0) -> ArmComparison:
    """Champion and challenger arms of a split (``frame`` has an ``arm`` column)."""
    champ = arm_figures(Arm.CHAMPION, frame[frame["arm"] == Arm.CHAMPION], seed=seed)
    chall = arm_figures(Arm.CHALLENGER, frame[frame["arm"] == Arm.CHALLENGER], seed=seed)
    diff = (chall.default_rate - champ.default_rate
            if chall.default_rate is not None and champ.default_rate is not None else None)
    interval = difference_interval(champ.defaults, champ.with_outcome, chall.defaults, chall.with_outcome)
    return ArmComparison(champ, chall, diff, interval)


def _bootstrap_auc(y: np.ndarray, p: np.ndarray, seed: int, resamples: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        idx = rng.integers(0, len(y), len(y))
        if 0 < y[idx].sum() < len(idx):
            values.append(roc_auc_score(y[idx], p[idx]))
    if len(values) < resamples // 2:
        return float("nan"), float("nan")
    return float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))
