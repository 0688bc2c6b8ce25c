"""SHAP explanations and the plain-language reason codes built from them.

Contributions come from TreeSHAP on the uncalibrated tree model: calibration is a
monotone map on top, so which factors push a case towards default does not change.
Reason codes name only declared features (never an id, the outcome or a protected
characteristic) and are worded from the config.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from finflow_core.lending.config import Config
from finflow_core.lending.model.bundle import ModelBundle


@dataclass(frozen=True)
class Reason:
    feature: str
    text: str
    value: Any
    contribution: float


@dataclass
class Explanation:
    """SHAP values of a set of rows, in the model's raw output space."""

    features: list[str]
    values: np.ndarray  # (n, f) feature values as the model saw them (codes decoded elsewhere)
    shap: np.ndarray  # (n, f)
    base_value: float


class ReasonExplainer:
    """Explains a model version's scores and words the reasons for a person."""

    def __init__(self, bundle: ModelBundle, config: Config, top_k: int | None = None) -> None:
        import shap

        self.bundle = bundle
        self.config = config
        self.top_k = top_k or config.model.reason_codes
        self.features = list(bundle.feature_names)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._tree = shap.TreeExplainer(bundle.model.estimator_)
        ev = np.atleast_1d(np.asarray(self._tree.expected_value, dtype=float))
        self.base_value = float(ev[-1])
        self._templates = {f: _templates(config, f) for f in self.features}
        self._labels = {f: config.feature_display(f) for f in self.features}
        self._maps_unknown = {f for f in bundle.categorical if config.column(f).unknown_maps_to
                              == "missing"}
        self._positions = {c: i for i, c in enumerate(self.features)}

    def explain(self, frame: pd.DataFrame) -> Explanation:
        return self.explain_matrix(self.bundle.model.features_.transform(frame))

    def explain_matrix(self, matrix: np.ndarray) -> Explanation:
        """SHAP values of rows already turned into the model's matrix."""
        if len(matrix) == 0:  # the tree models refuse an empty matrix
            return Explanation(self.features, matrix, np.zeros((0, len(self.features))), self.base_value)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sv = self._tree.shap_values(matrix, check_additivity=False)
        sv = np.asarray(sv[-1] if isinstance(sv, list) else sv, dtype=float)
        if sv.ndim == 3:  # (n, f, classes)
            sv = sv[:, :, -1]
        return Explanation(self.features, matrix, sv, self.base_value)

    def reasons(self, frame: pd.DataFrame, explanation: Explanation | None = None) -> list[list[Reason]]:
        """Top risk-increasing reasons per row, strongest first."""
        return [[Reason(**r) for r in row] for row in self.reason_records(frame, explanation)]

    def reason_records(
        self, frame: pd.DataFrame, explanation: Explanation | None = None
    ) -> list[list[dict[str, Any]]]:
        """The same reasons as plain dicts (feature, text, value, contribution), for storing.

        Which features may be cited is decided for all rows at once; only the chosen
        reasons (at most ``top_k`` per row) are worded one by one.
        """
        if len(frame) == 0:  # nothing to explain (the tree models refuse an empty matrix)
            return []
        exp = explanation or self.explain(frame)
        cat_values = {c: frame[c].astype(object).to_numpy() for c in self.bundle.categorical}
        citable = (exp.shap > 0) & self._has_wording(exp.values)
        order = np.argsort(-exp.shap, axis=1, kind="stable")
        chosen = np.take_along_axis(citable, order, axis=1)
        chosen &= np.cumsum(chosen, axis=1) <= self.top_k
        out: list[list[dict[str, Any]]] = [[] for _ in range(len(frame))]
        words: dict[tuple[str, Any], str | None] = {}  # a batch repeats its values: word each once
        rows, ks = np.nonzero(chosen)
        cols = order[rows, ks]
        contributions = exp.shap[rows, cols].tolist()
        numbers = exp.values[rows, cols].tolist()  # Python floats (NaN: missing)
        for i, j, c, x in zip(rows.tolist(), cols.tolist(), contributions, numbers, strict=True):
            name = self.features[j]  # row-major: each row's strongest reason first
            if name in cat_values:
                value = cat_values[name][i]
                missing = _missing(value)
            else:
                value, missing = x, x != x
            if missing:
                text = self._word(name, value)
            else:
                key = (name, value)
                text = words.get(key, _UNWORDED)
                if text is _UNWORDED:
                    text = words[key] = self._word(name, value)
            out[i].append({"feature": name, "text": text, "value": _plain(value), "contribution": c})
        return out

    def _has_wording(self, values: np.ndarray) -> np.ndarray:
        """(rows, features): whether the config lets a value of that feature be cited."""
        ok = np.ones(values.shape, dtype=bool)
        for j, name in enumerate(self.features):
            high, low, _ = self._templates[name]
            if name in self.bundle.categorical or (high is None and low is None):
                continue
            v = values[:, j]
            ref = self.bundle.reference.get(name, math.nan)
            is_high = ~np.isnan(v) & (v >= ref) if not math.isnan(ref) else np.zeros(len(v), dtype=bool)
            ok[:, j] = np.isnan(v) | np.where(is_high, high is not None, low is not None)
        return ok

    def _word(self, name: str, value: Any) -> str | None:
        """The reason in words, or None where the config declares no adverse reason that way.

        A feature that declares a reason for one direction only (say, a low credit score)
        is never cited for the other: a lender gives only reasons it can stand behind.
        """
        high, low, cat = self._templates[name]
        label = self._labels[name]
        if _missing(value):
            if name in self._maps_unknown:  # an undeclared code reads as missing too
                return f"{label} was not provided or not a recognised code ({name} missing)"
            return f"{label} was not provided ({name} missing)"
        if name in self.bundle.categorical:
            text = cat or f"{label} '{value}' carries a higher default history"
            return f"{text} ({name} {value})"
        ref = self.bundle.reference.get(name, math.nan)
        is_high = not math.isnan(ref) and float(value) >= ref
        declared = high is not None or low is not None
        template = high if is_high else low
        if template is None:
            if declared:
                return None
            template = f"{label} is {'high' if is_high else 'low'}"
        return f"{template} ({name} {format_value(float(value))})"


_UNWORDED: Any = object()


def format_value(v: float) -> str:
    """Numbers as a person reads them: 0.62, 3, 1,250,000."""
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.2f}"


def _templates(config: Config, name: str) -> tuple[str | None, str | None, str | None]:
    for r in config.ratios:
        if r.name == name:
            return r.reason_high, r.reason_low, None
    col = config.column(name)
    if col.role in ("id", "target", "protected"):  # never an identifier, the outcome, or sex...
        raise ValueError(f"column {name!r} with role {col.role} cannot be a model feature")
    return col.reason_high, col.reason_low, col.reason_category


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def global_importance(bundle: ModelBundle, config: Config, frame: pd.DataFrame,
                      rows: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean absolute SHAP value of each feature over a sample: what drives the model overall."""
    sample = frame.sample(min(rows, len(frame)), random_state=seed) if len(frame) > rows else frame
    exp = ReasonExplainer(bundle, config).explain(sample)
    means = np.abs(exp.shap).mean(axis=0)
    return {f: round(float(m), 6) for f, m in sorted(zip(exp.features, means, strict=True),
                                                     key=lambda t: -t[1])}
