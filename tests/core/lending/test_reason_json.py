"""Reasons worded column-wise and encoded once: the same text, dicts and JSON as one by one.

The fast path rounds numbers in numpy and words each distinct shown value once; the JSON is
joined from pieces. Both must equal what the scalar formatters and ``json`` give, byte for
byte: the stored JSON is sealed and compared later.
"""

from __future__ import annotations

import gc
import json
import math
from datetime import date
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from finflow_core import formatting as fmt
from finflow_core.lending.config import Config
from finflow_core.lending.explain import Explanation, ReasonExplainer
from finflow_core.lending.field_text import field_text
from finflow_core.lending.model.bundle import ModelBundle
from finflow_core.lending.reason_json import (
    CONTRIBUTION,
    collector_paused,
    json_floats,
    json_numbers,
    rounded_half_up,
)
from finflow_core.store.chunk_rows import reasons_json

#: Ties of the number as written (0.125 -> 0.13, 2.5 -> 3, 0.12345 -> 12.35%), values a hair
#: either side of them, the float that prints as 0.5 but is below it, sign and size extremes.
EDGES = [0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 0.125, -0.125, 0.135, 1.005, 2.675, 0.12345,
         0.19285, 999.995, 999.994999, 1000.0, -1000.0, 1234.5, 0.49999999999999994,
         1e-9, -1e-9, 5e-5, 4.9999999e-5, 1e15, 1e16, 1e20, 1e300, -1e300, 2.0**52 + 0.5,
         2.0**53, 123456789.5, 0.1 + 0.2, math.nan, math.inf, -math.inf]


def _values(seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grid = np.arange(-3000, 3000) / 8  # every eighth: exact binary ties at 0 and 2 decimals
    near = np.concatenate([np.nextafter(grid, np.inf), np.nextafter(grid, -np.inf)])
    written = np.array([float(f"{k}5e-{d}") for k in range(0, 400) for d in (3, 5)])  # x.xx5
    return np.concatenate([
        EDGES, grid, near, written, -written, rng.normal(0, 1, 4000), rng.uniform(-1e6, 1e6, 4000),
        rng.lognormal(10, 3, 4000), np.round(rng.uniform(0, 1, 4000), 4),
        np.round(rng.uniform(-500, 500, 4000), 2), np.round(rng.uniform(0, 1e7, 2000)) + 0.5,
    ])


#: Each rounding the reasons use and the scalar formatter it stands for.
FORMATTERS = {
    (0, math.inf): lambda v: fmt.money(v, "USD"),  # money: whole units
    (4, math.inf): fmt.rate,  # an interest rate: 19.28%
    (2, 1000.0): lambda v: fmt.number(v, 2),  # a ratio below 1,000: 0.62
}


@pytest.mark.parametrize("rounding", list(FORMATTERS))
def test_vectorised_rounding_gives_the_scalar_formatters_text(rounding: tuple[int, float]) -> None:
    """Where the numpy rounding says it is sure, its units are the number the scalar
    formatter shows (checked through the formatter itself, given the units as a Decimal);
    where it is not (ties as written, huge, non-finite), the scalar one words it."""
    decimals, below = rounding
    show = FORMATTERS[rounding]
    x = _values()
    units, sure = rounded_half_up(x, decimals, below)
    assert sure[np.abs(x) < below].mean() > 0.5  # the fast path is the common one (many ties here)
    for v, u, ok in zip(x.tolist(), units.tolist(), sure.tolist(), strict=True):
        if not ok:
            continue
        exact = Decimal(repr(v)).scaleb(decimals).quantize(Decimal(1), rounding="ROUND_HALF_UP")
        assert u == int(exact), v
        assert show(v) == show(Decimal(u).scaleb(-decimals)), v
    ties = {0: [2.5, -0.5, 123456789.5], 2: [0.125, 1.005, -2.675], 4: [0.12345, 0.19285]}
    assert not rounded_half_up(np.array(ties[decimals]), decimals, below)[1].any()  # never guessed
    assert not rounded_half_up(np.array([math.nan, math.inf, -math.inf, 1e300]), decimals, below)[1].any()


def test_equal_units_mean_equal_text_at_the_edges(config: Config) -> None:
    """Values the fast path puts together (same units, same side of zero) read alike."""
    x = _values(11)
    for name, rounding in (("annual_revenue", (0, math.inf)), ("interest_rate", (4, math.inf)),
                           ("loan_to_income", (2, 1000.0)), ("credit_score", (0, math.inf))):
        units, sure = rounded_half_up(x, *rounding)
        texts: dict[int, str] = {}
        for v, u, ok in zip(x.tolist(), units.tolist(), sure.tolist(), strict=True):
            if ok:
                assert texts.setdefault(u, field_text(config, name, v)) == field_text(config, name, v)


def test_json_floats_are_written_as_json_writes_them() -> None:
    x = _values(3)
    assert json_floats(x) == [json.dumps(v) for v in x.tolist()]
    assert json_numbers(x).tolist() == [json.dumps(v) + CONTRIBUTION for v in x.tolist()]
    for zeros in ([0.0, -0.0, -0.0, 0.0], [-0.0, 0.0, 1.0, 0.0]):
        assert json_numbers(np.array(zeros)).tolist() == [repr(z) + CONTRIBUTION for z in zeros]


def _one_by_one(explainer: ReasonExplainer, frame: pd.DataFrame, exp: Explanation) -> list:
    """The reasons as the explainer worded them before (argsort, one ``_word`` per value)."""
    citable = (exp.shap > 0) & explainer._has_wording(exp.values)
    order = np.argsort(-exp.shap, axis=1, kind="stable")
    chosen = np.take_along_axis(citable, order, axis=1)
    chosen &= np.cumsum(chosen, axis=1) <= explainer.top_k
    out: list[list[dict]] = [[] for _ in range(len(frame))]
    rows, ks = np.nonzero(chosen)
    for i, k in zip(rows.tolist(), ks.tolist(), strict=True):
        j = int(order[i, k])
        name = explainer.features[j]
        if name in explainer.bundle.categorical:
            value = frame[name].astype(object).to_numpy()[i]
        else:
            value = float(exp.values[i, j])
        text = explainer._word(name, value)[1]
        value = value.item() if isinstance(value, np.generic) else value
        out[i].append({"feature": name, "text": text, "value": value,
                       "contribution": float(exp.shap[i, j])})
    return out


def _crafted(bundle: ModelBundle, frame: pd.DataFrame, seed: int) -> Explanation:
    """Values and contributions with ties, missing values, ties of rounding and extremes."""
    rng = np.random.default_rng(seed)
    matrix = bundle.model.features_.transform(frame).astype(float)
    features = list(bundle.feature_names)
    numeric = [j for j, f in enumerate(features) if f not in bundle.categorical]
    edges = np.array([v for v in EDGES if not abs(v) > 1e20])  # Decimal cannot round 1e300
    for j in numeric:
        pick = rng.random(len(matrix)) < 0.25
        matrix[pick, j] = rng.choice(edges, pick.sum())
    shap = np.round(rng.normal(0, 0.2, matrix.shape), 2)  # rounded: many exact ties
    shap[rng.random(matrix.shape) < 0.05] = 1e-300
    return Explanation(features, matrix, shap, 0.0)


def _same(a: list, b: list) -> bool:
    return repr(a) == repr(b) and all(
        type(x["value"]) is type(y["value"]) for ra, rb in zip(a, b, strict=True)
        for x, y in zip(ra, rb, strict=True))


def test_reason_rows_equal_the_one_by_one_wording(bundle: ModelBundle, config: Config,
                                                  fresh_scored: object) -> None:
    frame = fresh_scored.report.valid.head(600).copy()
    frame.loc[frame.index[:40], "industry"] = None  # missing codes
    explainer = ReasonExplainer(bundle, config)
    for seed in (1, 2):  # the second call words from what the first kept
        exp = _crafted(bundle, frame, seed)
        rows = explainer.reason_rows(frame, exp)
        expected = _one_by_one(explainer, frame, exp)
        assert _same(rows.records, expected)
        assert rows.encoded == [json.JSONEncoder().encode(r) for r in expected]
        assert reasons_json(rows.records, rows.encoded) == reasons_json(expected)


def test_codes_of_other_types_are_left_for_the_writer_to_encode(bundle: ModelBundle,
                                                                config: Config,
                                                                fresh_scored: object) -> None:
    """A code that is no plain str (numpy text, a date) is worded one by one; a row with a
    value JSON has no plain form for carries no JSON, and the writer encodes it itself."""
    frame = fresh_scored.report.valid.head(3).copy()
    frame["industry"] = pd.Series([np.str_("hospitality"), date(2026, 1, 5), None],
                                  index=frame.index, dtype=object)
    exp = _crafted(bundle, frame, 3)
    exp.shap[:, list(bundle.feature_names).index("industry")] = 5.0
    explainer = ReasonExplainer(bundle, config)
    rows = explainer.reason_rows(frame, exp)
    expected = _one_by_one(explainer, frame, exp)
    assert _same(rows.records, expected)
    assert rows.records[0][0]["value"] == "hospitality" and type(rows.records[0][0]["value"]) is str
    assert rows.encoded[0] == json.dumps(expected[0]) and rows.encoded[2] == json.dumps(expected[2])
    assert rows.encoded[1] is None
    assert reasons_json(rows.records, rows.encoded) == reasons_json(expected)


def test_the_scored_frame_carries_the_json_the_writer_would_write(fresh_scored: object) -> None:
    d = fresh_scored.decisions
    assert d["reasons_json"].dtype == object
    assert d["reasons_json"].tolist() == reasons_json(d["reasons"].tolist())
    assert (d.loc[d["decision"] == "approve", "reasons_json"] == "[]").all()


def test_the_collector_is_paused_only_while_building() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # left as it was
    finally:
        gc.enable()
