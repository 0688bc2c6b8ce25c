"""Decision strategy: loan economics, the profit curve, cut-off and band edges."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pandas as pd
import pytest

from finflow_core.lending.config import Config, CutoffRule, Economics, RateByBand
from finflow_core.lending.strategy import (
    BAND_DECISION,
    HIGH,
    LOW,
    MEDIUM,
    LoanValues,
    Strategy,
    amortised_interest,
    assign_bands,
    evaluate_edges,
    expected_values,
    fit_strategy,
    profit_curve,
    realised_values,
)
from finflow_core.lending.synthetic import generate_applications


def test_amortised_interest_hand_computed() -> None:
    # 250,000 at 9% over 60 months: payment 5,189.59 a month (textbook example)
    assert amortised_interest(250_000, 0.09, 60) == pytest.approx(5189.5888 * 60 - 250_000, abs=0.01)
    assert amortised_interest(250_000, 0.09, 60) == pytest.approx(61_375.33, abs=0.01)
    # 12,000 at 12% over 12 months: payment 1,066.19
    assert amortised_interest(12_000, 0.12, 12) == pytest.approx(794.23, abs=0.01)
    # one month: exactly one month's interest; zero rate: no interest
    assert amortised_interest(10_000, 0.06, 1) == pytest.approx(50.0, abs=1e-9)
    out = amortised_interest(np.array([10_000.0, 5_000.0]), np.array([0.0, 0.0]), np.array([12, 24]))
    np.testing.assert_allclose(out, [0.0, 0.0], atol=1e-9)


def test_interest_grows_with_rate_and_term() -> None:
    rates = np.linspace(0.01, 0.3, 30)
    by_rate = amortised_interest(np.full(30, 50_000.0), rates, np.full(30, 36))
    assert np.all(np.diff(by_rate) > 0)
    terms = np.arange(6, 121, 6)
    by_term = amortised_interest(np.full(len(terms), 50_000.0), np.full(len(terms), 0.1), terms)
    assert np.all(np.diff(by_term) > 0)
    # less than simple interest on the full amount over the whole term
    assert np.all(by_term < 50_000 * 0.1 * terms / 12)


def test_loan_values_and_expected_values() -> None:
    eco = Economics(loss_given_default=0.5, cost_of_funds=0.03, review_cost=100.0,
                    review_default_detection=0.6, review_good_decline=0.2)
    v = LoanValues.compute(np.array([12_000.0]), np.array([0.12]), np.array([12.0]), eco)
    margin = 794.2256 - amortised_interest(12_000, 0.03, 12)
    assert v.margin[0] == pytest.approx(margin, abs=1e-3)
    assert v.loss[0] == 6_000.0
    p = np.array([0.1])
    approve, review = expected_values(p, v, eco)
    assert approve[0] == pytest.approx(0.9 * margin - 0.1 * 6_000, abs=1e-3)
    assert review[0] == pytest.approx(0.9 * 0.8 * margin - 0.1 * 0.4 * 6_000 - 100, abs=1e-3)
    good, _ = realised_values(np.array([0]), v, eco)
    bad, bad_review = realised_values(np.array([1]), v, eco)
    assert good[0] == pytest.approx(margin, abs=1e-3)
    assert bad[0] == -6_000.0
    assert bad_review[0] == pytest.approx(-0.4 * 6_000 - 100)


def test_assign_bands_edge_semantics() -> None:
    p = np.array([0.0, 0.0999, 0.1, 0.2, 0.2999, 0.3, 0.9, 1.0])
    bands = assign_bands(p, 0.1, 0.3)
    assert bands.tolist() == [LOW, LOW, MEDIUM, MEDIUM, MEDIUM, HIGH, HIGH, HIGH]
    # equal edges: no medium band
    assert MEDIUM not in assign_bands(p, 0.3, 0.3).tolist()
    assert [BAND_DECISION[b] for b in (LOW, MEDIUM, HIGH)] == ["approve", "review", "decline"]


@pytest.fixture(scope="module")
def population(config: Config) -> tuple[np.ndarray, np.ndarray, LoanValues]:
    df = generate_applications(3000, seed=51, with_truth=True)
    return (df["true_pd"].to_numpy(), df["default"].to_numpy(),
            LoanValues.from_frame(df, config))


def test_profit_curve_monotonic_facts(config: Config,
                                      population: tuple[np.ndarray, np.ndarray, LoanValues]) -> None:
    p, y, v = population
    eco = config.economics
    thresholds = np.concatenate([[0.0], np.quantile(p, np.linspace(0, 1, 50)), [1.01]])
    curve = profit_curve(p, y, v, eco, np.sort(thresholds))
    assert np.all(np.diff(curve["approval_rate"]) >= 0)
    assert np.all(np.diff(curve["amount_approved"]) >= 0)
    assert curve["profit"].iloc[0] == 0.0 and curve["approval_rate"].iloc[0] == 0.0
    approve_real, _ = realised_values(y, v, eco)
    approve_exp, _ = expected_values(p, v, eco)
    assert curve["approval_rate"].iloc[-1] == 1.0
    assert curve["profit"].iloc[-1] == pytest.approx(approve_real.sum())
    assert curve["expected_profit"].iloc[-1] == pytest.approx(approve_exp.sum())
    assert curve["amount_approved"].iloc[-1] == pytest.approx(v.amount.sum())
    # each point approves exactly the applications with p below the threshold
    cols = ["threshold", "approval_rate", "profit", "expected_profit"]
    for t, rate, profit, expected in curve[cols].itertuples(index=False):
        chosen = p < t
        assert rate == pytest.approx(chosen.mean())
        assert profit == pytest.approx(approve_real[chosen].sum())
        assert expected == pytest.approx(approve_exp[chosen].sum())


def test_profit_curve_with_perfect_scores_peaks_after_every_good_loan(config: Config) -> None:
    eco = config.economics
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.05, 0.1, 0.15, 0.8, 0.9])
    v = LoanValues.compute(np.full(5, 10_000.0), np.full(5, 0.15), np.full(5, 24.0), eco)
    curve = profit_curve(p, y, v, eco, np.array([0.0, 0.12, 0.5, 0.85, 1.0]))
    profit = curve["profit"].to_numpy()
    assert np.all(np.diff(profit[:3]) > 0) and np.all(np.diff(profit[2:]) < 0)
    assert int(np.argmax(profit)) == 2


@pytest.mark.parametrize("target", [0.0, 0.5, 0.7, 0.9, 1.0])
def test_fit_strategy_meets_the_automation_target(
    config: Config, population: tuple[np.ndarray, np.ndarray, LoanValues], target: float
) -> None:
    p, y, v = population
    cfg = dataclasses.replace(
        config, strategy=dataclasses.replace(config.strategy, automation_target=target)
    )
    s = fit_strategy(p, y, v, cfg)
    assert s.automation_target == target
    assert s.automation_rate >= target - 1e-4
    assert 0 <= s.low_edge <= s.high_edge
    bands = assign_bands(p, s.low_edge, s.high_edge)
    shares = {b: float(np.mean(bands == b)) for b in (LOW, MEDIUM, HIGH)}
    assert s.band_shares == {b: round(x, 4) for b, x in shares.items()}
    assert s.automation_rate == pytest.approx(1 - shares[MEDIUM], abs=1e-4)
    # the banded profit is the realised profit of those bands
    approve, review = realised_values(y, v, cfg.economics)
    banded = approve[bands == LOW].sum() + review[bands == MEDIUM].sum()
    assert s.profit == pytest.approx(banded, abs=0.01)
    # deciding everything at the cut-off is one of the feasible policies
    assert s.profit >= s.profit_cutoff_only - 0.01
    if target == 1.0:
        assert shares[MEDIUM] == 0.0


def test_cutoff_maximises_the_profit_curve(
    config: Config, population: tuple[np.ndarray, np.ndarray, LoanValues]
) -> None:
    p, y, v = population
    s = fit_strategy(p, y, v, config)
    curve = pd.DataFrame(s.curve)
    assert len(curve) >= 150
    best = curve["profit"].max()
    assert s.profit_cutoff_only == pytest.approx(best)
    assert s.cutoff == curve["threshold"][curve["profit"].idxmax()]
    approve, _ = realised_values(y, v, config.economics)
    assert approve[p < s.cutoff].sum() == pytest.approx(s.profit_cutoff_only, abs=0.01)
    assert approve.sum() <= s.profit_cutoff_only  # approving all is on the curve too


def test_band_edges_are_the_best_feasible_pair(
    config: Config, population: tuple[np.ndarray, np.ndarray, LoanValues]
) -> None:
    p, y, v = population
    s = fit_strategy(p, y, v, config)
    approve, review = realised_values(y, v, config.economics)
    grid = np.array(s.curve["threshold"])
    rng = np.random.default_rng(0)
    for lo, hi in rng.choice(grid, size=(400, 2)):
        lo, hi = min(lo, hi), max(lo, hi)
        bands = assign_bands(p, lo, hi)
        if np.mean(bands == MEDIUM) > 1 - config.strategy.automation_target:
            continue
        profit = approve[bands == LOW].sum() + review[bands == MEDIUM].sum()
        assert profit <= s.profit + 0.01


def test_evaluate_edges_consistent_with_shares(
    config: Config, population: tuple[np.ndarray, np.ndarray, LoanValues]
) -> None:
    p, _, v = population
    eco = config.economics
    out = evaluate_edges(p, v, eco, 0.08, 0.3)
    bands = assign_bands(p, 0.08, 0.3)
    assert out["share_low"] == pytest.approx(np.mean(bands == LOW))
    assert out["share_medium"] == pytest.approx(np.mean(bands == MEDIUM))
    assert out["share_high"] == pytest.approx(np.mean(bands == HIGH))
    assert out["share_low"] + out["share_medium"] + out["share_high"] == pytest.approx(1.0)
    assert out["automation_rate"] == pytest.approx(1 - out["share_medium"])
    approve, review = expected_values(p, v, eco)
    profit = approve[bands == LOW].sum() + review[bands == MEDIUM].sum()
    assert out["expected_profit"] == pytest.approx(profit)
    lent = v.amount[bands == LOW].sum() + (1 - eco.review_good_decline) * v.amount[bands == MEDIUM].sum()
    assert out["roi"] == pytest.approx(profit / lent)
    # widening the medium band lowers automation
    wider = evaluate_edges(p, v, eco, 0.05, 0.4)
    assert wider["automation_rate"] < out["automation_rate"]
    empty = evaluate_edges(np.array([]), LoanValues.compute(np.array([]), np.array([]), np.array([]), eco),
                           eco, 0.1, 0.2)
    assert empty["automation_rate"] == 0.0 and empty["expected_profit"] == 0.0


def test_strategy_round_trip_and_edge_checks(
    config: Config, population: tuple[np.ndarray, np.ndarray, LoanValues]
) -> None:
    p, y, v = population
    s = fit_strategy(p, y, v, config)
    assert Strategy.from_dict(s.to_dict()) == s
    moved = s.with_edges(0.05, 0.5)
    assert (moved.low_edge, moved.high_edge) == (0.05, 0.5)
    assert moved.cutoff == s.cutoff
    with pytest.raises(ValueError, match="band edges"):
        s.with_edges(0.5, 0.1)
    with pytest.raises(ValueError, match="band edges"):
        s.with_edges(-0.1, 0.5)


# -- pricing from config, no pricing, cut-off by a target -------------------------------------

def _priced_by(config: Config, raw_pricing: dict, cutoff: dict | None = None,
               drop: tuple[str, ...] = ("interest_rate",)) -> Config:
    columns = tuple(c for c in config.columns if c.role not in drop)
    pricing = dataclasses.replace(
        config.pricing, rate_column=None if "interest_rate" in drop else config.rate_column,
        term_column=None if "term" in drop else config.term_column, **raw_pricing)
    strategy = config.strategy if cutoff is None else dataclasses.replace(
        config.strategy, cutoff=CutoffRule(**cutoff))
    return dataclasses.replace(config, columns=columns, pricing=pricing, strategy=strategy)


def test_loan_values_from_assumed_pricing(config: Config) -> None:
    df = generate_applications(50, seed=52)
    eco = config.economics
    product = _priced_by(config, {"interest_rate": 0.12, "term_months": 36},
                         drop=("interest_rate", "term"))
    v = LoanValues.from_frame(df, product)
    want = LoanValues.compute(df["loan_amount"].to_numpy(float), np.full(50, 0.12), np.full(50, 36.0), eco)
    np.testing.assert_allclose(v.margin, want.margin)
    assert v.priced and v.margin_review is None
    by_band = _priced_by(config, {"rate_by_band": RateByBand(low=0.09, medium=0.15)})
    v = LoanValues.from_frame(df, by_band)
    term = df["term_months"].to_numpy(float)
    amount = df["loan_amount"].to_numpy(float)
    np.testing.assert_allclose(v.margin, LoanValues.compute(amount, np.full(50, 0.09), term, eco).margin)
    np.testing.assert_allclose(v.review_margin,
                               LoanValues.compute(amount, np.full(50, 0.15), term, eco).margin)
    p = np.full(50, 0.1)
    _, review = expected_values(p, v, eco)
    assert review[0] == pytest.approx(0.9 * 0.9 * v.margin_review[0] - 0.1 * 0.5 * v.loss[0] - 120)
    unpriced = LoanValues.from_frame(df, _priced_by(config, {}, {"by": "approval_rate", "value": 0.5}))
    assert not unpriced.priced and np.isnan(unpriced.margin).all()
    assert LoanValues(**dataclasses.asdict(unpriced)).priced is False  # the bundle's what-if copy


@pytest.mark.parametrize("value", [0.04, 0.08, 0.15])
def test_cutoff_by_max_bad_rate(config: Config, population: tuple[np.ndarray, np.ndarray, LoanValues],
                                value: float) -> None:
    p, y, v = population
    cfg = _priced_by(config, {}, {"by": "max_bad_rate", "value": value})
    unpriced = LoanValues(np.full(len(p), np.nan), v.loss, v.amount, priced=False)
    s = fit_strategy(p, y, unpriced, cfg)
    approved = p < s.cutoff
    assert y[approved].mean() <= value + 1e-9
    assert s.cutoff_bad_rate == pytest.approx(y[approved].mean(), abs=1e-4)
    assert s.cutoff_approval_rate == pytest.approx(approved.mean(), abs=1e-4)
    # the next threshold of the grid would break the ceiling: the most approvals within it
    grid = np.array(s.curve["threshold"])
    later = grid[grid > s.cutoff]
    assert all(y[p < t].mean() > value for t in later)
    assert s.low_edge <= s.cutoff <= s.high_edge
    assert s.automation_rate >= cfg.strategy.automation_target - 1e-4
    assert np.isnan(s.profit) and np.isnan(s.roi) and not s.priced
    assert (s.cutoff_method, s.cutoff_target) == ("max_bad_rate", value)
    assert s.objective == s.cutoff_approval_rate
    assert Strategy.from_dict(json.loads(json.dumps(s.to_dict()))).cutoff == s.cutoff
    assert pickle.loads(pickle.dumps(s)) == s  # NaN profits do not make a saved strategy differ


def test_cutoff_by_approval_rate_with_real_pricing(
    config: Config, population: tuple[np.ndarray, np.ndarray, LoanValues]
) -> None:
    p, y, v = population
    cfg = dataclasses.replace(config, strategy=dataclasses.replace(
        config.strategy, cutoff=CutoffRule(by="approval_rate", value=0.6)))
    s = fit_strategy(p, y, v, cfg)
    assert 0.6 <= s.cutoff_approval_rate <= 0.61
    assert s.priced and np.isfinite(s.profit)
    assert s.low_edge <= s.cutoff <= s.high_edge
    assert s.objective == -s.cutoff_bad_rate


def test_a_strategy_that_never_declines_is_flagged(config: Config) -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(0.01, 0.3, 2000)
    y = rng.binomial(1, p)
    eco = config.economics
    rich = LoanValues.compute(np.full(2000, 50_000.0), np.full(2000, 0.6), np.full(2000, 60.0), eco)
    cfg = dataclasses.replace(config, pricing=dataclasses.replace(config.pricing, interest_rate=0.6,
                                                                  rate_column=None))
    s = fit_strategy(p, y, rich, cfg)
    assert s.never_declines and s.band_shares[HIGH] <= 1 / 2000
    assert s.score_max == pytest.approx(p.max())
    assert "never declines" in s.warning and "assumed pricing (interest_rate)" in s.warning
    fine = fit_strategy(p, y, LoanValues.compute(np.full(2000, 50_000.0), np.full(2000, 0.08),
                                                 np.full(2000, 60.0), eco), config)
    assert not fine.never_declines and fine.warning is None
    edited = fine.with_edges(0.0, 0.25)
    assert edited.never_approves and not edited.never_declines
    assert edited.warning.startswith("this strategy never approves automatically")


def test_evaluate_edges_gives_the_expected_bad_rate_without_pricing(
    config: Config, population: tuple[np.ndarray, np.ndarray, LoanValues]
) -> None:
    p, _, v = population
    unpriced = LoanValues(np.full(len(p), np.nan), v.loss, v.amount, priced=False)
    out = evaluate_edges(p, unpriced, config.economics, 0.08, 0.3)
    assert np.isnan(out["expected_profit"])
    assert out["expected_bad_rate_approved"] == pytest.approx(p[p < 0.08].mean())
    assert out["automation_rate"] == pytest.approx(1 - np.mean((p >= 0.08) & (p < 0.3)))
