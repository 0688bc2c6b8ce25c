"""Feature engineering: validated applications in, the model's numeric matrix out.

One model input per declared feature (categories become ordinal codes, not one-hot
columns), so every SHAP value maps back to one thing a person can recognise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError

from finflow_core.lending.config import Config


class FeatureBuilder(TransformerMixin, BaseEstimator):
    """Build the model matrix: base features, category codes, then engineered ratios.

    Parameters
    ----------
    base_features : names of the input columns the model uses, in order.
    categories : for each categorical feature, its declared categories (code = position).
    ratios : ``(name, numerator_columns, denominator_columns)`` triples.
    """

    def __init__(
        self,
        base_features: Sequence[str] = (),
        categories: Mapping[str, Sequence[str]] | None = None,
        ratios: Sequence[tuple[str, Sequence[str], Sequence[str]]] = (),
    ) -> None:
        self.base_features = base_features
        self.categories = categories
        self.ratios = ratios

    @classmethod
    def from_config(cls, config: Config) -> FeatureBuilder:
        cats = {c: list(config.column(c).categories) for c in config.categorical_features}
        ratios = [(r.name, list(r.numerator), list(r.denominator)) for r in config.ratios]
        return cls(base_features=list(config.base_features), categories=cats, ratios=ratios)

    def fit(self, X: pd.DataFrame, y: Any = None) -> FeatureBuilder:
        missing = self._required_columns() - set(X.columns)
        if missing:
            raise ValueError(
                f"input lacks columns {sorted(missing)}: validate the batch before building features"
            )
        self.feature_names_out_ = np.array(
            list(self.base_features) + [r[0] for r in self.ratios], dtype=object
        )
        self.n_features_out_ = len(self.feature_names_out_)
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        if not hasattr(self, "feature_names_out_"):
            raise NotFittedError("FeatureBuilder is not fitted: call fit first")
        n = len(X)
        out = np.empty((n, self.n_features_out_), dtype=np.float64)
        cats = self.categories or {}
        for j, name in enumerate(self.base_features):
            if name in cats:
                out[:, j] = category_codes(X[name], cats[name])
            else:
                out[:, j] = _as_float(X[name])
        base = len(self.base_features)
        for k, (_, num, den) in enumerate(self.ratios):
            numerator = sum((_as_float(X[c]) for c in num), start=np.zeros(n))
            denominator = sum((_as_float(X[c]) for c in den), start=np.zeros(n))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = numerator / denominator
            ratio[~np.isfinite(ratio) | (denominator <= 0)] = np.nan
            out[:, base + k] = ratio
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return self.feature_names_out_

    def frame(self, X: pd.DataFrame) -> pd.DataFrame:
        """The engineered features as a readable frame (category codes decoded back to labels)."""
        matrix = self.transform(X)
        df = pd.DataFrame(matrix, columns=list(self.feature_names_out_), index=X.index)
        for name in (self.categories or {}):
            df[name] = X[name].astype(object).to_numpy()
        return df

    def _required_columns(self) -> set[str]:
        cols = set(self.base_features)
        for _, num, den in self.ratios:
            cols |= set(num) | set(den)
        return cols


def category_codes(values: pd.Series, categories: Sequence[str]) -> np.ndarray:
    """Position of each value in ``categories``; unknown or missing values give NaN."""
    index = pd.Index(list(categories), dtype=object)
    codes = index.get_indexer(pd.Series(values, copy=False).astype(object)).astype(np.float64)
    codes[codes < 0] = np.nan
    return codes


def _as_float(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
