"""SHAP explanations and the plain-language reason codes built from them.

Contributions come from TreeSHAP on the uncalibrated tree model: calibration is a
monotone map on top, so which factors push a case towards default does not change.
Reason codes name only declared features (never an id, the outcome or a protected
characteristic) and are worded from the config.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from finflow_core.lending.config import Config
from finflow_core.lending.field_text import absent, field_text, rounding_of
from finflow_core.lending.model.bundle import ModelBundle
from finflow_core.lending.reason_json import (
    CONTRIBUTION,
    collector_paused,
    joined_rows,
    json_floats,
    json_numbers,
    json_value,
    objects,
    rounded_half_up,
)
from finflow_core.lending.waterfall import ProbabilityWaterfall, probability_waterfall


@dataclass(frozen=True)
class Reason:
    feature: str
    text: str  # the statement and the value as a person reads it (statement_of: alone)
    value: Any
    contribution: float


@dataclass(frozen=True)
class ReasonRows:
    """Each row's reasons as dicts, and the same as JSON text (what the store keeps)."""

    records: list[list[dict[str, Any]]]
    #: ``json.JSONEncoder().encode(records[i])`` for each row, built from pieces encoded once
    #: per distinct text; None for a row holding a value JSON has no plain form for
    encoded: list[str | None]


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
        self._refs = np.array([self.bundle.reference.get(f, math.nan) for f in self.features],
                              dtype=float)
        self._roundings = {f: rounding_of(config, f) for f in self.features
                           if f not in self.bundle.categorical}
        self._unprovided = {f: self._word(f, None)[1] for f in self.features}
        self._json_names = [json.dumps(f) for f in self.features]
        #: texts worded already, by feature and the number as shown (or the value): batches
        #: repeat them, and chunks of one batch share most (thread-safe enough: a race only
        #: words a text twice)
        self._worded: dict[tuple[int, bool, Any], str] = {}
        self._heads: dict[tuple[int, str], str] = {}

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

    def waterfall(self, frame: pd.DataFrame, probability: float, *, cited: Iterable[str] = (),
                  top: int = 8) -> ProbabilityWaterfall:
        """One application's SHAP contributions as steps of probability of default, from
        the base rate to ``probability`` (its calibrated PD); the features in ``cited``
        (its reason codes) always get a bar of their own."""
        matrix = self.bundle.model.features_.transform(frame)
        exp = self.explain_matrix(matrix)
        readable = self.bundle.model.features_.frame(frame).iloc[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            uncalibrated = float(self.bundle.model.estimator_.predict_proba(matrix)[0, 1])
        calibrator = self.bundle.model.calibrator_

        def calibrated(p: float) -> float:
            return float(calibrator.predict(np.array([p]))[0])

        parts = [(f, self._labels[f], field_text(self.config, f, _plain(readable[f])),
                  float(exp.shap[0, j])) for j, f in enumerate(exp.features)]
        return probability_waterfall(exp.base_value, parts, uncalibrated, calibrated,
                                     float(probability), cited=set(cited), top=top)

    def reasons(self, frame: pd.DataFrame, explanation: Explanation | None = None) -> list[list[Reason]]:
        """Top risk-increasing reasons per row, strongest first."""
        return [[Reason(**r) for r in row] for row in self.reason_records(frame, explanation)]

    def reason_records(
        self, frame: pd.DataFrame, explanation: Explanation | None = None
    ) -> list[list[dict[str, Any]]]:
        """The same reasons as plain dicts (feature, text, value, contribution), for storing."""
        return self.reason_rows(frame, explanation).records

    def reason_rows(self, frame: pd.DataFrame, explanation: Explanation | None = None) -> ReasonRows:
        """:meth:`reason_records` and each row's JSON text.

        Which features may be cited is decided for all rows at once. The chosen reasons are
        worded feature by feature: a number's text depends only on the number as the table
        rounds it (and on which side of the reference it lies), so :meth:`_word` runs once
        per distinct text, not once per reason (40k calls of Decimal rounding per 100k rows
        cost more than the TreeSHAP). The JSON is joined from pieces encoded once per text.
        """
        if len(frame) == 0:  # nothing to explain (the tree models refuse an empty matrix)
            return ReasonRows([], [])
        exp = explanation or self.explain(frame)
        with collector_paused():
            return self._reason_rows(frame, exp)

    def _reason_rows(self, frame: pd.DataFrame, exp: Explanation) -> ReasonRows:
        rows, cols = self._chosen(exp)
        contributions = exp.shap[rows, cols]
        numbers = exp.values[rows, cols]
        values = numbers.astype(object)  # Python floats (NaN: missing); codes replaced below
        shown = json_numbers(numbers)  # '<value as JSON>, "contribution": ' (codes replaced below)
        texts = np.empty(len(cols), dtype=object)
        heads = np.empty(len(cols), dtype=object)  # '{"feature": ..., "text": ..., "value": '
        unplain: set[int] = set()  # rows holding a value JSON has no plain form for
        for j in np.unique(cols).tolist():
            at = np.flatnonzero(cols == j)
            name = self.features[j]
            if name in self.bundle.categorical:
                codes = frame[name].astype(object).to_numpy()[rows[at]]
                odd = self._word_codes(j, at, codes, values, shown, texts, heads)
                unplain.update(rows[at[odd]].tolist())
            else:
                self._word_numbers(j, at, numbers[at], texts, heads)
        names = np.asarray(self.features, dtype=object)[cols].tolist()
        records = [{"feature": f, "text": t, "value": v, "contribution": c} for f, t, v, c in zip(
            names, texts.tolist(), values.tolist(), contributions.tolist(), strict=True)]
        counts = np.bincount(rows, minlength=len(frame))
        out: list[list[dict[str, Any]]] = []
        start = 0
        for end in np.cumsum(counts).tolist():
            out.append(records[start:end])
            start = end
        return ReasonRows(out, joined_rows(rows, counts, heads, shown, json_floats(contributions),
                                       unplain))

    def _chosen(self, exp: Explanation) -> tuple[np.ndarray, np.ndarray]:
        """Row and feature of each reason to give, row by row, strongest first: at most
        ``top_k`` citable features per row by contribution, ties in feature order (as a
        stable sort), picked by ``top_k`` arg-maxes rather than sorting every row."""
        left = np.where((exp.shap > 0) & self._has_wording(exp.values), exp.shap, -np.inf)
        n = len(left)
        picks = np.zeros((n, self.top_k), dtype=np.intp)
        found = np.zeros((n, self.top_k), dtype=bool)
        every = np.arange(n)
        for k in range(min(self.top_k, left.shape[1])):
            j = np.argmax(left, axis=1)  # the first of equal maxima: the stable order
            found[:, k] = left[every, j] > -np.inf
            if not found[:, k].any():
                break
            picks[:, k] = j
            left[every, j] = -np.inf
        rows, ks = np.nonzero(found)  # row-major: each row's strongest reason first
        return rows, picks[rows, ks]

    def _word_numbers(self, j: int, at: np.ndarray, x: np.ndarray, texts: np.ndarray,
                      heads: np.ndarray) -> None:
        """Texts of one numeric feature's chosen values (at ``at``), ``_word`` once per text:
        by the number as shown where its rounding is certain, else by the value itself."""
        name = self.features[j]
        missing = np.isnan(x)
        ref = self._refs[j]
        high = ~missing & (x >= ref) if not math.isnan(ref) else np.zeros(len(x), dtype=bool)
        rounding = self._roundings[name]
        if rounding is not None:
            units, sure = rounded_half_up(x, *rounding)
        else:
            units, sure = np.zeros(len(x), dtype=np.int64), np.zeros(len(x), dtype=bool)
        if len(self._worded) > _WORDED_LIMIT:  # a bound on what a long-lived engine keeps
            self._worded.clear()
        for by_units, pick, key in ((True, sure, units * 2 + high), (False, ~sure & ~missing, x)):
            idx = np.flatnonzero(pick)
            if len(idx) == 0:
                continue
            distinct, first, inverse = np.unique(key[idx], return_index=True, return_inverse=True)
            worded = []
            for k, f in zip(distinct.tolist(), first.tolist(), strict=True):
                text = self._worded.get((j, by_units, k))
                if text is None:
                    text = self._worded[(j, by_units, k)] = self._word(name, float(x[idx[f]]))[1]
                worded.append(text)
            texts[at[idx]] = objects(worded)[inverse]
            heads[at[idx]] = objects([self._head(j, t) for t in worded])[inverse]
        if missing.any():
            text = self._unprovided[name]
            texts[at[missing]] = text
            heads[at[missing]] = self._head(j, text)

    def _word_codes(self, j: int, at: np.ndarray, codes: np.ndarray, values: np.ndarray,
                    shown: np.ndarray, texts: np.ndarray, heads: np.ndarray) -> np.ndarray:
        """Texts of one categorical feature's chosen codes, ``_word`` once per code; returns
        which of them JSON has no plain form for (the writer encodes those rows itself)."""
        name = self.features[j]
        ids, distinct = pd.factorize(codes)  # -1: missing (NaN, None)
        rest = np.arange(len(at))
        if all(type(c) is str for c in distinct):  # codes as text: each worded and encoded once
            known = ids >= 0
            worded = [self._word(name, c)[1] for c in distinct]
            k, u = at[known], ids[known]
            texts[k] = objects(worded)[u]
            heads[k] = objects([self._head(j, t) for t in worded])[u]
            shown[k] = objects([json.dumps(c) + CONTRIBUTION for c in distinct])[u]
            values[k] = codes[known]
            rest = rest[~known]
        odd = np.zeros(len(at), dtype=bool)
        seen: dict[Any, str] = {}
        for q in rest.tolist():  # missing, or codes of other types: one by one
            code, k = codes[q], at[q]
            if absent(code):
                text = self._unprovided[name]
            else:
                text = seen.get(code)
                if text is None:
                    text = seen[code] = self._word(name, code)[1]
            value = _plain(code)
            values[k], texts[k], heads[k] = value, text, self._head(j, text)
            as_json = json_value(value)
            if as_json is None:
                odd[q] = True
            else:
                shown[k] = as_json + CONTRIBUTION
        return odd

    def _head(self, j: int, text: str) -> str:
        """A reason's JSON up to its value: ``{"feature": ..., "text": ..., "value": ``."""
        head = self._heads.get((j, text))
        if head is None:
            if len(self._heads) > _WORDED_LIMIT:
                self._heads.clear()
            head = self._heads[(j, text)] = (
                f'{{"feature": {self._json_names[j]}, "text": {json.dumps(text)}, "value": ')
        return head

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

    def _word(self, name: str, value: Any) -> tuple[str, str]:
        """The reason as a statement in the lender's words, and as the officer reads it:
        the statement with the value formatted as the application table shows it (the
        configured label, rates as percentages, amounts with the currency). Only called
        for features :meth:`_has_wording` allows.

        A feature that declares a reason for one direction only (say, a low credit score)
        is never cited for the other: a lender gives only reasons it can stand behind.
        """
        high, low, _ = self._templates[name]
        label = self._labels[name]
        if absent(value):
            if name in self._maps_unknown:  # an undeclared code reads as missing too
                statement = f"{label} was not provided or not a recognised code"
            else:
                statement = f"{label} was not provided"
            return statement, statement
        shown = field_text(self.config, name, value)
        if name in self.bundle.categorical:
            cat = self.config.column(name).category_reason(str(value))
            if cat is None:
                statement = f"{label} '{shown}' carries a higher default history"
                return statement, statement
            return cat, f"{cat} ({label}: {shown})"
        ref = self.bundle.reference.get(name, math.nan)
        is_high = not math.isnan(ref) and float(value) >= ref
        template = high if is_high else low
        if template is None:  # no wording declared for this feature at all: a generic one
            statement = f"{label} is {'high' if is_high else 'low'}"
            return statement, f"{statement} ({shown})"
        return template, f"{template} ({label} {shown})"


def statement_of(reason: dict[str, Any], config: Config) -> str:
    """A stored reason's statement alone, in the lender's words, without the value (for a
    letter to the applicant): the text less the one value in brackets that
    :meth:`ReasonExplainer._word` added after it (none for a missing value or an undeclared
    category wording)."""
    text = str(reason.get("text", ""))
    name = str(reason.get("feature", ""))
    if absent(reason.get("value")) or not text.endswith(")"):
        return text
    if name in config.categorical_features and config.column(name).category_reason(
            str(reason.get("value"))) is None:
        return text
    cut = text.rfind(" (")
    return text[:cut] if cut > 0 else text


#: Texts an explainer keeps worded at most (some 5,000 distinct per 100k applications).
_WORDED_LIMIT = 200_000


def _templates(config: Config, name: str) -> tuple[str | None, str | None, str | None]:
    for r in config.ratios:
        if r.name == name:
            return r.reason_high, r.reason_low, None
    col = config.column(name)
    if col.role in ("id", "target", "protected"):  # never an identifier, the outcome, or sex...
        raise ValueError(f"column {name!r} with role {col.role} cannot be a model feature")
    return col.reason_high, col.reason_low, col.reason_category


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
