"""Population Stability Index of the score and every feature against the training baseline.

Numeric bins are the baseline's deciles (duplicate edges merged, outer bins open-ended,
values on an edge fall in the bin below it, missing values in a bin of their own);
categorical bins are the declared categories plus one bin for anything unseen. Empty
proportions are floored. PSI = sum((actual - expected) * ln(actual / expected)).
Bins are fixed at training, so a batch costs one ``searchsorted`` per column, and counts
add up across chunks or partitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from finflow_core.lending.terms import DriftStatus

STABLE, WATCH, ALERT = DriftStatus.STABLE, DriftStatus.WATCH, DriftStatus.ALERT
SCORE = "score"


@dataclass(frozen=True)
class BinSpec:
    """How one column is binned: numeric edges or category labels."""

    name: str
    kind: str  # "numeric" | "categorical"
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    expected: tuple[float, ...] = ()  # baseline proportions per bin (unfloored)
    has_missing_bin: bool = True

    @property
    def labels(self) -> list[str]:
        if self.kind == "categorical":
            return [*self.categories, "(other)", "(missing)"]
        lo = ["-inf", *[f"{e:.6g}" for e in self.edges]]
        hi = [*[f"{e:.6g}" for e in self.edges], "inf"]
        return [f"({a}, {b}]" for a, b in zip(lo, hi, strict=True)] + ["(missing)"]

    @property
    def n_bins(self) -> int:
        return len(self.categories) + 2 if self.kind == "categorical" else len(self.edges) + 2

    def counts(self, values: pd.Series | np.ndarray) -> np.ndarray:
        """Count values per bin (last bin: missing)."""
        if self.kind == "categorical":
            codes = _codes(values, self.categories)
            missing = pd.isna(values) if isinstance(values, np.ndarray) else pd.Series(values).isna()
            codes = np.where(codes < 0, len(self.categories), codes)  # unseen
            codes[np.asarray(missing)] = len(self.categories) + 1
            return np.bincount(codes, minlength=self.n_bins)
        if isinstance(values, np.ndarray) and values.dtype.kind == "f":
            # a column of the model matrix is a strided view: one copy, then fast passes
            arr = np.ascontiguousarray(values)
        else:
            arr = pd.to_numeric(pd.Series(values, copy=False), errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
        # cumulative counts at each edge (x <= edge): one vectorised comparison per edge,
        # much cheaper than a binary search per value; NaN compares False everywhere
        n_valid = int(arr.size - np.count_nonzero(np.isnan(arr)))
        at_or_below = [np.count_nonzero(arr <= e) for e in self.edges]
        cumulative = np.array([*at_or_below, n_valid], dtype=np.int64)
        inner = np.diff(cumulative, prepend=0)
        return np.concatenate([inner, [arr.size - n_valid]])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _codes(values: pd.Series | np.ndarray, categories: tuple[str, ...]) -> np.ndarray:
    """Position of each value among ``categories`` (-1: unseen or missing)."""
    s = pd.Series(values, copy=False)
    if isinstance(s.dtype, pd.CategoricalDtype) and tuple(s.cat.categories) == categories:
        return s.cat.codes.to_numpy(dtype=np.int64)  # validated batches: already coded
    index = pd.Index(list(categories), dtype=object)
    return index.get_indexer(s.astype(object)).astype(np.int64)


def numeric_bins(name: str, baseline: np.ndarray, bins: int = 10) -> BinSpec:
    """Bins at the baseline's quantiles (deciles by default)."""
    arr = np.asarray(baseline, dtype=float)
    arr = arr[~np.isnan(arr)]
    if len(arr) == 0:
        edges: tuple[float, ...] = ()
    else:
        qs = np.quantile(arr, np.linspace(0, 1, bins + 1)[1:-1])
        edges = tuple(float(e) for e in np.unique(qs))
    spec = BinSpec(name=name, kind="numeric", edges=edges)
    return _with_expected(spec, baseline)


def categorical_bins(name: str, baseline: pd.Series, categories: Iterable[str]) -> BinSpec:
    spec = BinSpec(name=name, kind="categorical", categories=tuple(str(c) for c in categories))
    return _with_expected(spec, baseline)


def _with_expected(spec: BinSpec, baseline: Any) -> BinSpec:
    counts = spec.counts(baseline)
    total = counts.sum()
    expected = tuple(float(c / total) for c in counts) if total else ()
    return BinSpec(**{**asdict(spec), "expected": expected})


def psi_from_counts(expected: np.ndarray, actual_counts: np.ndarray, floor: float = 1e-4) -> float:
    """PSI between baseline proportions and a batch's bin counts."""
    total = actual_counts.sum()
    if total == 0:
        return float("nan")
    e = np.maximum(np.asarray(expected, dtype=float), floor)
    a = np.maximum(actual_counts / total, floor)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = (a - e) * np.log(a / e)
    # a bin empty in both contributes nothing (with a zero floor it would make the sum NaN)
    return float(np.sum(np.where(a == e, 0.0, terms)))


def status_of(psi: float, watch: float, alert: float) -> str:
    if np.isnan(psi) or psi < watch:
        return STABLE
    return WATCH if psi <= alert else ALERT


@dataclass
class DriftBaseline:
    """The bins and baseline proportions stored with a model."""

    specs: dict[str, BinSpec]
    floor: float = 1e-4
    watch: float = 0.10
    alert: float = 0.20

    def counts(self, frame: pd.DataFrame, scores: np.ndarray) -> dict[str, np.ndarray]:
        """Bin counts for one chunk of a batch; add them up across chunks."""
        out: dict[str, np.ndarray] = {}
        for name, spec in self.specs.items():
            out[name] = spec.counts(scores if name == SCORE else frame[name])
        return out

    def report(self, counts: Mapping[str, np.ndarray]) -> DriftReport:
        values = {
            name: psi_from_counts(np.asarray(spec.expected), counts[name], self.floor)
            for name, spec in self.specs.items()
        }
        return DriftReport.from_values(values, self.watch, self.alert, counts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "floor": self.floor, "watch": self.watch, "alert": self.alert,
            "specs": {k: v.to_dict() for k, v in self.specs.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DriftBaseline:
        specs = {}
        for k, v in d["specs"].items():
            specs[k] = BinSpec(**{**v, "edges": tuple(v["edges"]), "categories": tuple(v["categories"]),
                                  "expected": tuple(v["expected"])})
        return cls(specs=specs, floor=d["floor"], watch=d["watch"], alert=d["alert"])


@dataclass
class DriftReport:
    """PSI per column and the overall status (the worst of score and features)."""

    score_psi: float
    features: dict[str, float]
    status: str
    statuses: dict[str, str]
    alerts: list[str] = field(default_factory=list)
    counts: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def from_values(
        cls, values: Mapping[str, float], watch: float, alert: float,
        counts: Mapping[str, np.ndarray] | None = None,
    ) -> DriftReport:
        statuses = {k: status_of(v, watch, alert) for k, v in values.items()}
        order = {STABLE: 0, WATCH: 1, ALERT: 2}
        worst = max(statuses.values(), key=order.__getitem__, default=STABLE)
        return cls(
            score_psi=round(float(values.get(SCORE, float("nan"))), 4),
            features={k: round(float(v), 4) for k, v in values.items() if k != SCORE},
            status=worst,
            statuses=statuses,
            alerts=[k for k, s in statuses.items() if s == ALERT],
            counts={k: [int(x) for x in c] for k, c in (counts or {}).items()},
        )

    def summary(self) -> dict[str, Any]:
        return {"status": self.status, "score_psi": self.score_psi, "features": dict(self.features)}


def build_baseline(
    frame: pd.DataFrame, scores: np.ndarray, numeric: Iterable[str],
    categorical: Mapping[str, Iterable[str]], bins: int = 10, floor: float = 1e-4,
    watch: float = 0.10, alert: float = 0.20,
) -> DriftBaseline:
    """Baseline from the training features and out-of-fold scores."""
    specs: dict[str, BinSpec] = {SCORE: numeric_bins(SCORE, np.asarray(scores), bins)}
    for name in numeric:
        specs[name] = numeric_bins(name, frame[name].to_numpy(dtype=float, na_value=np.nan), bins)
    for name, cats in categorical.items():
        specs[name] = categorical_bins(name, frame[name], cats)
    return DriftBaseline(specs=specs, floor=floor, watch=watch, alert=alert)
