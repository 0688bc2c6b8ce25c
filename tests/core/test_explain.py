"""Reason codes: plain language, declared features only, risk-increasing, config directions."""

from __future__ import annotations

import copy
import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from finflow_core.lending.config import ColumnSpec, Config
from finflow_core.lending.explain import Explanation, ReasonExplainer, format_value
from finflow_core.lending.model.bundle import ModelBundle
from finflow_core.lending.scoring import ScoringEngine

REASON = re.compile(r"^(?P<text>.+) \((?P<feature>[a-z_]+) (?P<value>[^()]+)\)$")


@pytest.fixture(scope="module")
def explainer(engine: ScoringEngine) -> ReasonExplainer:
    assert engine.explainer is not None
    return engine.explainer


@pytest.fixture(scope="module")
def flagged(fresh_scored: object) -> pd.DataFrame:
    d = fresh_scored.decisions
    return d[d["decision"] != "approve"]


def _all_reasons(flagged: pd.DataFrame) -> list[dict]:
    return [r for rs in flagged["reasons"] for r in rs]


def test_every_review_and_decline_has_a_reason(flagged: pd.DataFrame, config: Config) -> None:
    assert len(flagged) > 500
    counts = flagged["reasons"].map(len)
    assert counts.min() >= 1
    assert counts.max() <= config.model.reason_codes == 4


def test_reasons_are_plain_language_with_feature_and_value(flagged: pd.DataFrame,
                                                           config: Config) -> None:
    for r in _all_reasons(flagged):
        m = REASON.match(r["text"])
        assert m, r["text"]
        assert m["feature"] == r["feature"]
        assert r["feature"] in config.feature_names
        if r["value"] is None or (isinstance(r["value"], float) and np.isnan(r["value"])):
            assert m["value"] == "missing"
        elif r["feature"] in config.categorical_features:
            assert m["value"] == r["value"]
        else:
            assert m["value"] == format_value(float(r["value"]))
        assert "_" not in m["text"]  # worded for a person, not a column dump


def test_reasons_never_cite_id_target_or_undeclared_columns(flagged: pd.DataFrame,
                                                            config: Config) -> None:
    cited = {r["feature"] for r in _all_reasons(flagged)}
    assert cited <= set(config.feature_names)
    assert not cited & {config.id_column, config.target_column, "application_date"}
    assert {"credit_score", "loan_to_income"} <= cited
    for r in _all_reasons(flagged):
        assert "application_id" not in r["text"] and "APP-" not in r["text"]


def test_only_risk_increasing_reasons_strongest_first(flagged: pd.DataFrame) -> None:
    for reasons in flagged["reasons"]:
        contributions = [r["contribution"] for r in reasons]
        assert all(c > 0 for c in contributions)
        assert contributions == sorted(contributions, reverse=True)
        assert len({r["feature"] for r in reasons}) == len(reasons)


def test_reasons_follow_declared_directions(flagged: pd.DataFrame, config: Config,
                                            bundle: ModelBundle) -> None:
    templates = {c.name: (c.reason_high, c.reason_low, c.reason_category) for c in config.columns}
    templates.update({r.name: (r.reason_high, r.reason_low, None) for r in config.ratios})
    seen_low_only = 0
    for r in _all_reasons(flagged):
        high, low, cat = templates[r["feature"]]
        text = REASON.match(r["text"])["text"]
        value = r["value"]
        if value is None or (isinstance(value, float) and np.isnan(value)):
            assert text.endswith(("was not provided", "was not provided or not a recognised code"))
            continue
        if r["feature"] in config.categorical_features:
            assert text == cat
            continue
        is_high = float(value) >= bundle.reference[r["feature"]]
        if high is None and low is not None:  # declared for low values only
            assert not is_high, r
            seen_low_only += 1
        if low is None and high is not None:  # declared for high values only
            assert is_high, r
        if high is None and low is None:  # no wording declared: a generic one
            label = config.feature_display(r["feature"])
            assert text == f"{label} is {'high' if is_high else 'low'}"
        else:
            assert text == (high if is_high else low)
    assert seen_low_only > 0  # years_in_business / employees are cited when low


def test_approvals_have_no_reasons(fresh_scored: object) -> None:
    d = fresh_scored.decisions
    assert (d.loc[d["decision"] == "approve", "reasons"].map(len) == 0).all()


def test_shap_values_add_up_to_the_raw_score(explainer: ReasonExplainer, bundle: ModelBundle,
                                             fresh_scored: object) -> None:
    frame = fresh_scored.report.valid.head(200)
    exp = explainer.explain(frame)
    assert exp.shap.shape == (200, len(bundle.feature_names))
    assert exp.features == list(bundle.feature_names)
    matrix = bundle.model.features_.transform(frame)
    est = bundle.model.estimator_
    if bundle.model_name == "lightgbm":
        raw = est.predict(matrix, raw_score=True)
    else:
        raw = est.predict_proba(matrix)[:, 1]
    np.testing.assert_allclose(exp.shap.sum(axis=1) + exp.base_value, raw, atol=1e-6)


def test_top_k_limits_reasons(bundle: ModelBundle, config: Config, fresh_scored: object) -> None:
    explainer = ReasonExplainer(bundle, config, top_k=2)
    frame = fresh_scored.report.valid.head(300)
    reasons = explainer.reasons(frame)
    assert len(reasons) == 300
    assert max(len(r) for r in reasons) == 2
    assert explainer.reasons(frame.head(0)) == []
    empty = explainer.explain(frame.head(0))
    assert empty.shap.shape == (0, len(bundle.feature_names))


def _crafted(explainer: ReasonExplainer, bundle: ModelBundle, frame: pd.DataFrame,
             values: dict[str, float], shap: dict[str, float]) -> list:
    """Reasons for one row with chosen feature values and SHAP contributions."""
    features = list(bundle.feature_names)
    matrix = bundle.model.features_.transform(frame)
    for name, v in values.items():
        matrix[0, features.index(name)] = v
    contributions = np.zeros((1, len(features)))
    for name, v in shap.items():
        contributions[0, features.index(name)] = v
    return explainer.reasons(frame, Explanation(features, matrix, contributions, 0.0))[0]


def test_undeclared_direction_is_never_cited(explainer: ReasonExplainer, bundle: ModelBundle,
                                             fresh_scored: object) -> None:
    frame = fresh_scored.report.valid.head(1)
    ref = bundle.reference
    reasons = _crafted(
        explainer, bundle, frame,
        # long trading history (declared: only "short"), low loan-to-income (declared: "high")
        values={"years_in_business": ref["years_in_business"] * 3,
                "loan_to_income": ref["loan_to_income"] / 3,
                "recent_delinquencies": 4.0, "credit_score": 520.0},
        shap={"years_in_business": 0.9, "loan_to_income": 0.8, "recent_delinquencies": 0.5,
              "credit_score": 0.4, "industry": -0.2},
    )
    assert [r.feature for r in reasons] == ["recent_delinquencies", "credit_score"]
    assert reasons[0].text == "There are recent missed or late payments (recent_delinquencies 4)"
    assert reasons[1].text == "The business credit score is low (credit_score 520)"
    assert reasons[0].contribution == 0.5


def test_missing_values_and_categories_are_worded(explainer: ReasonExplainer, bundle: ModelBundle,
                                                  fresh_scored: object) -> None:
    frame = fresh_scored.report.valid.head(1).copy()
    frame["industry"] = pd.Categorical(["hospitality"], categories=frame["industry"].cat.categories)
    reasons = _crafted(explainer, bundle, frame, values={"employees": np.nan},
                       shap={"employees": 0.3, "industry": 0.2})
    assert [r.text for r in reasons] == [
        "Employees was not provided (employees missing)",
        "The industry has a higher default history (industry hospitality)",
    ]
    assert reasons[1].value == "hospitality"


def test_features_without_wording_get_a_generic_reason(bundle: ModelBundle, config: Config,
                                                       fresh_scored: object) -> None:
    plain = dataclasses.replace(
        config,
        columns=tuple(dataclasses.replace(c, reason_high=None, reason_low=None,
                                          reason_category=None, label="") for c in config.columns),
        ratios=tuple(dataclasses.replace(r, reason_high=None, reason_low=None) for r in config.ratios),
    )
    explainer = ReasonExplainer(bundle, plain)
    frame = fresh_scored.report.valid.head(1)
    reasons = _crafted(explainer, bundle, frame,
                       values={"annual_revenue": 12_500.0, "interest_rate": 0.31},
                       shap={"annual_revenue": 0.5, "interest_rate": 0.4, "collateral": 0.1})
    value = frame["collateral"].iloc[0]
    assert [r.text for r in reasons] == [
        "Annual revenue is low (annual_revenue 12,500)",
        "Interest rate is high (interest_rate 0.31)",
        f"Collateral '{value}' carries a higher default history (collateral {value})",
    ]


def test_id_or_target_can_never_be_explained(bundle: ModelBundle, config: Config) -> None:
    broken = copy.copy(bundle)
    broken.feature_names = (*bundle.feature_names, "application_id")
    with pytest.raises(ValueError, match="role id cannot be a model feature"):
        ReasonExplainer(broken, config)


def test_a_protected_column_can_never_be_explained(bundle: ModelBundle, config: Config) -> None:
    sex = ColumnSpec(name="owner_sex", type="category", categories=("F", "M"), role="protected",
                     nullable=True)
    with_sex = dataclasses.replace(config, columns=(*config.columns, sex))
    assert "owner_sex" not in with_sex.feature_names
    broken = copy.copy(bundle)
    broken.feature_names = (*bundle.feature_names, "owner_sex")
    with pytest.raises(ValueError, match="role protected cannot be a model feature"):
        ReasonExplainer(broken, with_sex)


def test_an_unrecognised_code_is_worded_as_such(explainer: ReasonExplainer, bundle: ModelBundle,
                                                fresh_scored: object) -> None:
    frame = fresh_scored.report.valid.head(1).copy()
    frame["industry"] = pd.Categorical([None], categories=frame["industry"].cat.categories)
    reasons = _crafted(explainer, bundle, frame, values={"industry": np.nan},
                       shap={"industry": 0.4})
    assert [r.text for r in reasons] == [
        "Industry was not provided or not a recognised code (industry missing)"]


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.62, "0.62"), (0.6249, "0.62"), (3.0, "3"), (0.0, "0"), (1_250_000.0, "1,250,000"),
     (999.5, "999.50"), (-1500.0, "-1,500"), (12.345, "12.35")],
)
def test_format_value(value: float, text: str) -> None:
    assert format_value(value) == text
