"""Reason codes: plain language, declared features only, risk-increasing, config directions."""

from __future__ import annotations

import copy
import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from finflow_core.lending.config import ColumnSpec, Config
from finflow_core.lending.explain import Explanation, ReasonExplainer, statement_of
from finflow_core.lending.field_text import field_text
from finflow_core.lending.model.bundle import ModelBundle
from finflow_core.lending.scoring import ScoringEngine

#: Raw column names never reach a reason ("(interest_rate 0.19)" was the old wording).
RAW_NAME = re.compile(r"\b[a-z]+_[a-z_]+ -?[0-9]")


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


def test_reasons_are_plain_language_with_labels_and_formatted_values(flagged: pd.DataFrame,
                                                                    config: Config) -> None:
    """The statement in the lender's words, then the value as the application table shows
    it under its configured label: "... (Interest rate 19.28%)", never a column name."""
    seen_rate = 0
    for r in _all_reasons(flagged):
        text, statement, feature = r["text"], statement_of(r, config), r["feature"]
        assert feature in config.feature_names
        label = config.feature_display(feature)
        value = r["value"]
        if value is None or (isinstance(value, float) and np.isnan(value)):
            assert text == statement and "was not provided" in text
        elif feature in config.categorical_features:
            assert text == f"{statement} ({label}: {value})"
        else:
            assert text == f"{statement} ({label} {field_text(config, feature, value)})"
        assert ("_" not in feature or feature not in text) and not RAW_NAME.search(text), text
        assert "_" not in statement  # worded for a person, not a column dump
        if feature == "interest_rate":
            assert re.search(r"\(Interest rate \d+\.\d\d%\)$", text), text
            seen_rate += 1
    assert seen_rate > 0


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
        text = statement_of(r, config)
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
    assert reasons[0].text == "There are recent missed or late payments (Recent delinquencies 4)"
    assert reasons[1].text == "The business credit score is low (Credit score 520)"
    assert statement_of(dataclasses.asdict(reasons[1]), explainer.config) == (
        "The business credit score is low")
    assert reasons[0].contribution == 0.5


def test_missing_values_and_categories_are_worded(explainer: ReasonExplainer, bundle: ModelBundle,
                                                  fresh_scored: object) -> None:
    frame = fresh_scored.report.valid.head(1).copy()
    frame["industry"] = pd.Categorical(["hospitality"], categories=frame["industry"].cat.categories)
    reasons = _crafted(explainer, bundle, frame, values={"employees": np.nan},
                       shap={"employees": 0.3, "industry": 0.2})
    assert [r.text for r in reasons] == [
        "Employees was not provided",
        "The industry has a higher default history (Industry: hospitality)",
    ]
    assert reasons[1].value == "hospitality"
    assert [statement_of(dataclasses.asdict(r), explainer.config) for r in reasons] == [
        "Employees was not provided", "The industry has a higher default history"]


def test_a_category_worded_code_by_code_gives_each_code_its_own_statement(
        bundle: ModelBundle, config: Config, fresh_scored: object) -> None:
    """A flag worded for one code only said so to every applicant: SBAnational.csv's lender
    wrote "A new business carries more risk" for NewExist, and existing businesses (code 1)
    were given it, in the letter without the code that would show it was wrong."""
    by_code = {"hospitality": "Hospitality has a higher default history",
               "retail": "Retail has a higher default history"}
    worded = dataclasses.replace(config, columns=tuple(
        dataclasses.replace(c, reason_category=tuple(by_code.items())) if c.name == "industry"
        else c for c in config.columns))
    explainer = ReasonExplainer(bundle, worded)
    frame = fresh_scored.report.valid.head(1).copy()
    texts, letters = [], []
    for code in ("hospitality", "retail", "technology"):
        frame["industry"] = pd.Categorical([code], categories=frame["industry"].cat.categories)
        (reason,) = _crafted(explainer, bundle, frame, values={}, shap={"industry": 0.2})
        texts.append(reason.text)
        letters.append(statement_of(dataclasses.asdict(reason), worded))
    assert texts == ["Hospitality has a higher default history (Industry: hospitality)",
                     "Retail has a higher default history (Industry: retail)",
                     "Industry 'technology' carries a higher default history"]
    assert letters == ["Hospitality has a higher default history",
                       "Retail has a higher default history",
                       "Industry 'technology' carries a higher default history"]


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
        "Annual revenue is low (USD 12,500)",
        "Interest rate is high (31.00%)",
        f"Collateral '{value}' carries a higher default history",
    ]
    assert [statement_of(dataclasses.asdict(r), plain) for r in reasons] == [
        "Annual revenue is low", "Interest rate is high",
        f"Collateral '{value}' carries a higher default history"]


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
        "Industry was not provided or not a recognised code"]


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [("interest_rate", 0.1928, "19.28%"), ("interest_rate", 0.2, "20.00%"),
     ("loan_amount", 250_000.0, "USD 250,000"), ("annual_revenue", 1_234_567.4, "USD 1,234,567"),
     ("credit_score", 612.0, "612"), ("employees", 1200.0, "1,200"),
     ("years_in_business", 3.4999999, "3.5 years"), ("years_in_business", 1.0, "1 year"),
     ("term_months", 24, "24 months"), ("existing_debt", 8_500.0, "USD 8,500"),
     ("debt_to_income", 0.35, "0.35"), ("loan_to_income", 0.6249, "0.62"),
     ("loan_to_income", 999.5, "999.50"), ("loan_to_income", 1_234.6, "1,235"),
     ("revenue_per_employee", 45_000.4, "USD 45,000"),
     ("industry", "hospitality", "hospitality"), ("collateral", "none", "none"),
     ("credit_score", None, "–"),
     ("employees", float("nan"), "–")],
)
def test_field_text_formats_as_the_application_table(config: Config, name: str, value: object,
                                                    text: str) -> None:
    assert field_text(config, name, value) == text


def test_a_unit_is_declared_for_numbers_only_and_read_from_the_config(default_raw: dict) -> None:
    from finflow_core.errors import ConfigError
    from finflow_core.lending.config import parse_config

    raw = copy.deepcopy(default_raw)
    col = next(c for c in raw["dataset"]["columns"] if c["name"] == "credit_score")
    col["unit"] = "money"
    assert field_text(parse_config(raw), "credit_score", 612) == "USD 612"
    col["unit"] = "dollars"
    with pytest.raises(ConfigError, match="unit"):
        parse_config(raw)
    col.pop("unit")
    next(c for c in raw["dataset"]["columns"] if c["name"] == "industry")["unit"] = "money"
    with pytest.raises(ConfigError, match="a unit applies to numbers, not to a category column"):
        parse_config(raw)
