"""SHAP explanations and the plain-language reason codes built from them.

Contributions come from TreeSHAP on the uncalibrated tree model: calibration is a
monotone map on top, so which factors push a case towards default does not change.
Reason codes name only declared features (never an id, the outcome or a protected
characteristic) and are worded from the config.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from finflow_core import formatting as fmt
from finflow_core.lending.config import Config
from finflow_core.lending.model.bundle import ModelBundle


@dataclass(frozen=True)
class Reason:
    feature: str
    text: str  # the statement and the value as a person reads it (statement_of: alone)
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
        words: dict[tuple[str, Any], str] = {}  # a batch repeats its values: word each once
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
                text = self._word(name, value)[1]
            else:
                key = (name, value)
                text = words.get(key, _UNWORDED)
                if text is _UNWORDED:
                    text = words[key] = self._word(name, value)[1]
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

    def _word(self, name: str, value: Any) -> tuple[str, str]:
        """The reason as a statement in the lender's words, and as the officer reads it:
        the statement with the value formatted as the application table shows it (the
        configured label, rates as percentages, amounts with the currency). Only called
        for features :meth:`_has_wording` allows.

        A feature that declares a reason for one direction only (say, a low credit score)
        is never cited for the other: a lender gives only reasons it can stand behind.
        """
        high, low, cat = self._templates[name]
        label = self._labels[name]
        if _missing(value):
            if name in self._maps_unknown:  # an undeclared code reads as missing too
                statement = f"{label} was not provided or not a recognised code"
            else:
                statement = f"{label} was not provided"
            return statement, statement
        shown = field_text(self.config, name, value)
        if name in self.bundle.categorical:
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
    if _missing(reason.get("value")) or not text.endswith(")"):
        return text
    if name in config.categorical_features and config.column(name).reason_category is None:
        return text
    cut = text.rfind(" (")
    return text[:cut] if cut > 0 else text


#: The unit a column of a role has when it declares none.
ROLE_UNITS = {"loan_amount": "money", "income": "money", "interest_rate": "percent", "term": "months"}


def field_text(config: Config, name: str, value: Any) -> str:
    """A value of a column or ratio as the application table shows it, by its unit (see
    ``unit`` in the config): money with the currency (``USD 250,000``), rates as
    percentages (``19.28%``), ``24 months``, ``3.5 years``; other numbers with separators
    (ratios with two decimals, none from 1,000); codes as written; missing is ``–``."""
    if _missing(value) or (isinstance(value, str) and not value.strip()):
        return fmt.MISSING
    ratio = next((r for r in config.ratios if r.name == name), None)
    if ratio is not None:  # 0.62; a ratio in the thousands needs no decimals
        if ratio.unit is not None:
            return _in_unit(config, ratio.unit, value)
        return fmt.number(value, 2) if abs(float(value)) < 1000 else fmt.count(value)
    try:
        col = config.column(name)
    except KeyError:
        return fmt.text(value)
    if col.type in ("category", "string", "date"):  # a code as written ("none" is a code)
        return fmt.clean(str(value)).strip()
    if fmt.is_missing(value):
        return fmt.MISSING
    unit = col.unit or ROLE_UNITS.get(str(col.role))
    if unit is not None:
        return _in_unit(config, unit, value)
    if col.type == "integer":
        return fmt.count(value)
    return fmt.as_written(value)


def _in_unit(config: Config, unit: str, value: Any) -> str:
    if unit == "money":
        return fmt.money(value, config.economics.currency)
    if unit == "percent":
        return fmt.rate(value)
    shown = fmt.as_written(value)
    word = unit if shown != "1" else unit[:-1]  # 1 month, 3.5 years
    return f"{shown} {word}" if shown != fmt.MISSING else shown


@dataclass(frozen=True)
class Step:
    """One bar of the waterfall: a feature (or several small ones) moving the PD."""

    feature: str | None  # None: the features too small to draw one by one, summed
    label: str
    value: str  # as the application table shows it
    contribution: float  # SHAP value in the model's raw output
    start: float  # probability of default before this step
    end: float  # and after it
    cited: bool = False  # one of the case's reason codes

    @property
    def change(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class ProbabilityWaterfall:
    """A case's explanation in probability of default.

    SHAP values add up in the model's raw output (log-odds for boosted trees, probability
    for a forest). The steps add them one at a time, largest first, and turn each running
    total into a probability (through the logistic function when the raw output is
    log-odds); the probability path is then scaled between its two ends so it starts at
    the calibrated base rate (the PD of an application scored at the model's average) and
    ends exactly at the case's calibrated PD. Because the logistic curve is not a straight
    line, a step's size depends on where in the sequence it comes; the steps always add up
    to the difference between the case's PD and the base rate.
    """

    base: float
    probability: float
    steps: list[Step]
    link: str  # "logit" (raw output is log-odds), "identity" (a probability) or "linear"

    @property
    def grouped(self) -> int:
        """How many features the "other features" bar sums (0: none)."""
        return next((int(s.value) for s in self.steps if s.feature is None), 0)


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def probability_waterfall(base_value: float, parts: Sequence[tuple[str, str, str, float]],
                          uncalibrated: float, calibrated: Callable[[float], float],
                          probability: float, *, cited: set[str] | frozenset[str] = frozenset(),
                          top: int = 8) -> ProbabilityWaterfall:
    """The steps of :class:`ProbabilityWaterfall` from ``parts`` (feature, label, value
    text, raw SHAP value); ``uncalibrated`` is the model's own probability for the case,
    which tells whether the raw output is log-odds or a probability."""
    raw_total = base_value + sum(p[3] for p in parts)
    to_p: Callable[[float], float]
    if abs(raw_total - uncalibrated) <= 1e-6:
        link, to_p = "identity", (lambda r: min(1.0, max(0.0, r)))
    elif abs(_logistic(raw_total) - uncalibrated) <= 1e-6:
        link, to_p = "logit", _logistic
    else:  # neither (should not happen with tree SHAP): spread the change in proportion
        link, to_p = "linear", (lambda r: r)
    ordered = sorted(parts, key=lambda p: -abs(p[3]))
    shown = [p for i, p in enumerate(ordered) if i < top or p[0] in cited]
    drawn = {p[0] for p in shown}
    rest = [p for p in ordered if p[0] not in drawn]
    bars: list[tuple[str | None, str, str, float]] = list(shown)
    if rest:
        bars.append((None, f"{len(rest)} other features", str(len(rest)), sum(p[3] for p in rest)))
    running = [base_value]
    for bar in bars:
        running.append(running[-1] + bar[3])
    q = [to_p(r) for r in running]
    p0 = calibrated(min(1.0, max(0.0, to_p(base_value))))
    span = q[-1] - q[0]
    scale = (probability - p0) / span if span else 0.0
    path = [p0 + (qk - q[0]) * scale for qk in q]
    path[-1] = probability  # the bars end exactly at the case's PD
    steps = [Step(b[0], b[1], b[2], b[3], path[k], path[k + 1], b[0] in cited)
             for k, b in enumerate(bars)]
    return ProbabilityWaterfall(p0, probability, steps, link)


_UNWORDED: Any = object()


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
