"""Synthetic applications: default rate, reproducibility, truth column, drift scenarios."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from finflow_core.lending.config import Config
from finflow_core.lending.intake.validation import validate_batch
from finflow_core.lending.synthetic import SCENARIOS, expected_logistic, generate_applications


@pytest.mark.parametrize("seed", [0, 3, 11, 42, 2026])
def test_default_rate_between_13_and_17_percent(seed: int) -> None:
    df = generate_applications(5000, seed=seed)
    assert len(df) == 5000
    assert 0.13 <= df["default"].mean() <= 0.17
    assert set(df["default"].unique()) <= {0, 1}


def test_default_rate_at_larger_size() -> None:
    assert 0.13 <= generate_applications(20_000, seed=99)["default"].mean() <= 0.17


def test_reproducible_by_seed() -> None:
    a = generate_applications(500, seed=5)
    b = generate_applications(500, seed=5)
    c = generate_applications(500, seed=6)
    pd.testing.assert_frame_equal(a, b)
    assert not a["credit_score"].equals(c["credit_score"])
    assert a["application_id"].is_unique


def test_true_pd_only_with_truth() -> None:
    plain = generate_applications(300, seed=2)
    truth = generate_applications(300, seed=2, with_truth=True)
    assert "true_pd" not in plain.columns
    assert "true_pd" in truth.columns
    pd.testing.assert_frame_equal(plain, truth.drop(columns="true_pd"))
    assert truth["true_pd"].between(0, 1, inclusive="neither").all()


def test_true_pd_is_the_default_probability() -> None:
    df = generate_applications(20_000, seed=8, with_truth=True)
    assert abs(df["true_pd"].mean() - df["default"].mean()) < 0.01
    # the riskiest decile defaults far more often than the safest
    decile = pd.qcut(df["true_pd"], 10, labels=False)
    rates = df.groupby(decile)["default"].mean()
    assert rates.iloc[-1] > 4 * rates.iloc[0]


def test_expected_logistic_matches_monte_carlo() -> None:
    z = np.array([-3.0, 0.0, 1.5])
    rng = np.random.default_rng(0)
    e = rng.normal(0, 0.6, 400_000)
    mc = np.array([np.mean(1 / (1 + np.exp(-(zi + e)))) for zi in z])
    np.testing.assert_allclose(expected_logistic(z, 0.6), mc, atol=2e-3)
    np.testing.assert_allclose(expected_logistic(z, 0.0), 1 / (1 + np.exp(-z)), atol=1e-12)


def test_generated_data_passes_the_quality_gate(config: Config, to_csv: Callable) -> None:
    for drift in SCENARIOS:
        df = generate_applications(1500, seed=4, drift=drift)
        report = validate_batch(to_csv(df), config, require_target=True)
        assert report.rows_quarantined == 0, (drift, report.issues.head())
        assert report.rows_valid == 1500


def test_recession_shifts_the_population() -> None:
    base = generate_applications(5000, seed=21)
    rec = generate_applications(5000, seed=21, drift="recession")
    assert rec["credit_score"].mean() < base["credit_score"].mean() - 30
    assert rec["debt_to_income"].mean() > base["debt_to_income"].mean() + 0.1
    assert rec["recent_delinquencies"].mean() > 1.5 * base["recent_delinquencies"].mean()
    assert rec["annual_revenue"].median() < base["annual_revenue"].median()
    assert (rec["industry"] == "hospitality").mean() > (base["industry"] == "hospitality").mean()
    assert rec["default"].mean() > base["default"].mean() + 0.1


def test_expansion_shifts_the_population() -> None:
    base = generate_applications(5000, seed=22)
    exp = generate_applications(5000, seed=22, drift="expansion")
    assert exp["years_in_business"].median() < 0.6 * base["years_in_business"].median()
    ratio = lambda d: (d["loan_amount"] / d["annual_revenue"]).median()  # noqa: E731
    assert ratio(exp) > 1.3 * ratio(base)
    assert (exp["industry"] == "technology").mean() > 2 * (base["industry"] == "technology").mean()


def test_unknown_scenario_and_bad_size_raise_value_error() -> None:
    with pytest.raises(ValueError, match="unknown drift scenario 'boom'"):
        generate_applications(10, drift="boom")
    with pytest.raises(ValueError, match="rows"):
        generate_applications(0)
