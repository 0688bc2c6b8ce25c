"""PSI against an independent plain-Python reimplementation, and drift on real shifts."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import pytest

from finflow_core.lending.config import Config
from finflow_core.lending.drift import (
    ALERT,
    SCORE,
    STABLE,
    WATCH,
    DriftBaseline,
    DriftReport,
    build_baseline,
    categorical_bins,
    numeric_bins,
    psi_from_counts,
    status_of,
)
from finflow_core.lending.intake.validation import validate_batch
from finflow_core.lending.model.bundle import ModelBundle
from finflow_core.lending.scoring import ScoringEngine
from finflow_core.lending.synthetic import generate_applications

# -- the reference: loops and plain Python, written from the definition --------------------


def _is_missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def ref_quantile(ordered: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default method)."""
    h = (len(ordered) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])


def ref_edges(baseline: Sequence[float], bins: int = 10) -> list[float]:
    ordered = sorted(float(v) for v in baseline if not _is_missing(v))
    edges: list[float] = []
    for k in range(1, bins):
        e = ref_quantile(ordered, k / bins)
        if not edges or e != edges[-1]:  # merge duplicate edges
            edges.append(e)
    return edges


def ref_numeric_bin(v: object, edges: list[float]) -> int:
    if _is_missing(v):
        return len(edges) + 1  # missing values: their own bin
    for i, e in enumerate(edges):
        if float(v) <= e:  # on an edge: the bin below
            return i
    return len(edges)  # open-ended top bin


def ref_categorical_bin(v: object, categories: list[str]) -> int:
    if _is_missing(v):
        return len(categories) + 1
    return categories.index(v) if v in categories else len(categories)


def ref_psi(expected_counts: list[int], actual_counts: list[int], floor: float) -> float:
    n_e, n_a = sum(expected_counts), sum(actual_counts)
    total = 0.0
    for ce, ca in zip(expected_counts, actual_counts, strict=True):
        e = max(ce / n_e, floor)
        a = max(ca / n_a, floor)
        total += (a - e) * math.log(a / e)
    return total


def ref_numeric_psi(baseline: Sequence[float], actual: Sequence[float], floor: float = 1e-4) -> float:
    edges = ref_edges(baseline)
    e_counts = [0] * (len(edges) + 2)
    a_counts = [0] * (len(edges) + 2)
    for v in baseline:
        e_counts[ref_numeric_bin(v, edges)] += 1
    for v in actual:
        a_counts[ref_numeric_bin(v, edges)] += 1
    return ref_psi(e_counts, a_counts, floor)


def ref_categorical_psi(baseline: Sequence[object], actual: Sequence[object],
                        categories: list[str], floor: float = 1e-4) -> float:
    e_counts = [0] * (len(categories) + 2)
    a_counts = [0] * (len(categories) + 2)
    for v in baseline:
        e_counts[ref_categorical_bin(v, categories)] += 1
    for v in actual:
        a_counts[ref_categorical_bin(v, categories)] += 1
    return ref_psi(e_counts, a_counts, floor)


def psi(spec_builder: Callable[[], object], actual: object, floor: float = 1e-4) -> float:
    spec = spec_builder()
    return psi_from_counts(np.asarray(spec.expected), spec.counts(actual), floor)


# -- tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [0.0, 0.1, 0.5, 2.0])
def test_numeric_psi_matches_reference(shift: float) -> None:
    rng = np.random.default_rng(int(shift * 10))
    base = rng.lognormal(3, 1, 2000)
    base[rng.random(2000) < 0.03] = np.nan
    actual = rng.lognormal(3 + shift, 1 + shift / 4, 1500)
    actual[rng.random(1500) < 0.03 + shift / 20] = np.nan
    spec = numeric_bins("x", base)
    assert list(spec.edges) == pytest.approx(ref_edges(base.tolist()), rel=1e-12)
    got = psi_from_counts(np.asarray(spec.expected), spec.counts(actual))
    want = ref_numeric_psi(base.tolist(), actual.tolist())
    assert got == pytest.approx(want, abs=1e-9)
    if shift == 0.0:
        assert got < 0.1
    if shift >= 0.5:
        assert got > 0.2


def test_categorical_psi_matches_reference() -> None:
    cats = ["retail", "farming", "services"]
    rng = np.random.default_rng(3)
    base = rng.choice(np.array(["retail", "farming", "services", None], dtype=object), 1000,
                      p=[0.5, 0.3, 0.15, 0.05]).tolist()
    actual = rng.choice(np.array(["retail", "farming", "mining", None], dtype=object), 800,
                        p=[0.2, 0.4, 0.3, 0.1]).tolist()
    spec = categorical_bins("sector", pd.Series(base), cats)
    assert spec.n_bins == 5 and spec.labels == [*cats, "(other)", "(missing)"]
    counts = spec.counts(pd.Series(actual))
    assert counts.tolist() == [
        sum(ref_categorical_bin(v, cats) == i for v in actual) for i in range(5)
    ]
    got = psi_from_counts(np.asarray(spec.expected), counts)
    assert got == pytest.approx(ref_categorical_psi(base, actual, cats), abs=1e-9)
    # typed (pandas categorical) input counts the same
    typed = pd.Series(pd.Categorical(actual, categories=[*cats, "mining"]))
    assert spec.counts(typed).tolist() == counts.tolist()


def test_values_on_an_edge_fall_in_the_lower_bin() -> None:
    spec = numeric_bins("x", np.arange(0, 101, dtype=float))  # deciles 10, 20, ... 90
    assert spec.edges == pytest.approx(range(10, 100, 10), rel=1e-12)
    e = spec.edges
    values = [e[0], np.nextafter(e[0], 99), 9.9999, e[4], e[8], np.nextafter(e[8], 99), 90.5,
              -1e12, 1e12, np.nan, 0.0, 100.0]
    counts = spec.counts(np.array(values))
    expected = [0] * 11
    for v in values:
        expected[ref_numeric_bin(v, list(spec.edges))] += 1
    assert counts.tolist() == expected
    assert counts.tolist() == [4, 1, 0, 0, 1, 0, 0, 0, 1, 4, 1]
    assert spec.labels[0] == "(-inf, 10]" and spec.labels[-2] == "(90, inf]"
    assert spec.labels[-1] == "(missing)"
    # expected proportions: 11 values at or below 10 of 101, no missing
    assert spec.expected[0] == pytest.approx(11 / 101)
    assert spec.expected[-1] == 0.0
    assert sum(spec.expected) == pytest.approx(1.0)


def test_duplicate_edges_are_merged() -> None:
    rng = np.random.default_rng(5)
    base = np.concatenate([np.zeros(600), rng.integers(1, 6, 400).astype(float)])
    spec = numeric_bins("delinquencies", base)
    assert list(spec.edges) == pytest.approx(ref_edges(base.tolist()), rel=1e-12)
    assert len(spec.edges) < 9
    assert all(a < b for a, b in zip(spec.edges, spec.edges[1:], strict=False))
    assert spec.edges[0] == 0.0
    assert spec.n_bins == len(spec.edges) + 2 == len(spec.expected)
    assert spec.expected[0] == pytest.approx(0.6)
    actual = rng.integers(0, 8, 500).astype(float)
    assert psi_from_counts(np.asarray(spec.expected), spec.counts(actual)) == pytest.approx(
        ref_numeric_psi(base.tolist(), actual.tolist()), abs=1e-9
    )
    constant = numeric_bins("flat", np.full(50, 7.0))
    assert constant.edges == (7.0,)
    assert constant.counts(np.array([6.0, 7.0, 8.0])).tolist() == [2, 1, 0]


def test_empty_proportions_are_floored() -> None:
    expected = np.array([0.5, 0.5, 0.0])
    counts = np.array([100, 0, 0])
    a = [1.0, 1e-4, 1e-4]
    e = [0.5, 0.5, 1e-4]
    want = sum((ai - ei) * math.log(ai / ei) for ai, ei in zip(a, e, strict=True))
    assert psi_from_counts(expected, counts) == pytest.approx(want, abs=1e-12)
    assert math.isfinite(psi_from_counts(expected, counts))
    coarse = psi_from_counts(expected, counts, floor=1e-2)
    assert coarse != pytest.approx(want)
    assert psi_from_counts(expected, np.array([0, 0, 0])) != psi_from_counts(expected, counts)
    assert math.isnan(psi_from_counts(expected, np.array([0, 0, 0])))
    assert psi_from_counts(np.array([0.2, 0.8]), np.array([20, 80])) == 0.0
    # without a floor, a bin empty in both contributes nothing (not NaN, which reads stable)
    shifted = psi_from_counts(np.array([0.9, 0.1, 0.0]), np.array([10, 90, 0]), floor=0.0)
    assert shifted == pytest.approx(0.8 * math.log(9) * 2)
    assert psi_from_counts(np.array([0.9, 0.1, 0.0]), np.array([90, 10, 0]), floor=0.0) == 0.0


def test_statuses(config: Config) -> None:
    watch, alert = config.monitoring.psi_watch, config.monitoring.psi_alert
    assert (watch, alert) == (0.1, 0.2)
    assert status_of(0.0, watch, alert) == STABLE
    assert status_of(0.0999, watch, alert) == STABLE
    assert status_of(0.1, watch, alert) == WATCH
    assert status_of(0.15, watch, alert) == WATCH
    assert status_of(0.2, watch, alert) == WATCH
    assert status_of(0.2001, watch, alert) == ALERT
    assert status_of(float("nan"), watch, alert) == STABLE
    report = DriftReport.from_values({SCORE: 0.05, "a": 0.15, "b": 0.5, "c": 0.01}, watch, alert)
    assert report.status == ALERT and report.alerts == ["b"]
    assert report.statuses == {SCORE: STABLE, "a": WATCH, "b": ALERT, "c": STABLE}
    assert report.summary() == {"status": ALERT, "score_psi": 0.05,
                                "features": {"a": 0.15, "b": 0.5, "c": 0.01}}
    assert DriftReport.from_values({SCORE: 0.12}, watch, alert).status == WATCH


def _small_baseline() -> tuple[DriftBaseline, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(9)
    frame = pd.DataFrame({"x": rng.normal(0, 1, 1000),
                          "c": rng.choice(["a", "b", "c"], 1000)})
    scores = rng.beta(2, 8, 1000)
    return build_baseline(frame, scores, ["x"], {"c": ["a", "b", "c"]}), frame, scores


def test_counts_add_up_across_chunks() -> None:
    baseline, _, _ = _small_baseline()
    rng = np.random.default_rng(10)
    batch = pd.DataFrame({"x": rng.normal(0.3, 1, 999), "c": rng.choice(["a", "b", "z"], 999)})
    scores = rng.beta(2, 7, 999)
    whole = baseline.counts(batch, scores)
    summed: dict[str, np.ndarray] = {}
    for start in range(0, 999, 7):
        part = baseline.counts(batch.iloc[start:start + 7], scores[start:start + 7])
        for k, v in part.items():
            summed[k] = summed.get(k, 0) + v
    assert set(summed) == {SCORE, "x", "c"}
    for k in whole:
        assert summed[k].tolist() == whole[k].tolist()
        assert int(whole[k].sum()) == 999
    assert baseline.report(summed) == baseline.report(whole)


def test_baseline_round_trips_through_json() -> None:
    baseline, frame, scores = _small_baseline()
    again = DriftBaseline.from_dict(json.loads(json.dumps(baseline.to_dict())))
    assert again.specs == baseline.specs
    counts = baseline.counts(frame, scores)
    assert again.report(counts) == baseline.report(counts)
    # the baseline against itself: PSI 0 everywhere
    assert baseline.report(counts).features == {"x": 0.0, "c": 0.0}
    assert baseline.report(counts).score_psi == 0.0


def test_bundle_baseline_matches_training_features(bundle: ModelBundle, config: Config,
                                                   training_frame: pd.DataFrame) -> None:
    specs = bundle.baseline.specs
    assert set(specs) == {SCORE, *config.feature_names}
    assert specs["industry"].kind == "categorical"
    assert specs["credit_score"].kind == "numeric"
    assert bundle.baseline.watch == 0.1 and bundle.baseline.alert == 0.2
    cs = training_frame["credit_score"].astype(float).tolist()
    assert list(specs["credit_score"].edges) == pytest.approx(ref_edges(cs), rel=1e-12)
    for spec in specs.values():
        assert sum(spec.expected) == pytest.approx(1.0)


def _drift_report(engine: ScoringEngine, config: Config, to_csv: Callable, drift: str,
                  seed: int) -> DriftReport:
    df = generate_applications(2500, seed=seed, drift=drift).drop(columns="default")
    valid = validate_batch(to_csv(df), config).valid
    matrix = engine.features(valid)
    counts = engine.drift_counts(valid, matrix, engine.predict(matrix))
    return engine.bundle.baseline.report(counts)


def test_same_population_reads_stable(engine: ScoringEngine, config: Config,
                                      to_csv: Callable) -> None:
    report = _drift_report(engine, config, to_csv, "none", 61)
    assert report.status == STABLE, report.features
    assert max(report.features.values()) < 0.1
    assert report.score_psi < 0.1


def test_recession_alerts_on_shifted_features(engine: ScoringEngine, config: Config,
                                              to_csv: Callable) -> None:
    report = _drift_report(engine, config, to_csv, "recession", 62)
    assert report.status == ALERT
    for feature in ("credit_score", "debt_to_income", "recent_delinquencies"):
        assert report.statuses[feature] == ALERT, report.features
    assert report.statuses[SCORE] == ALERT
    # features the scenario leaves alone stay stable
    assert report.statuses["region"] == STABLE
    assert report.statuses["term_months"] == STABLE


def test_fresh_scoring_drift_counts(fresh_scored: object, engine: ScoringEngine) -> None:
    counts = fresh_scored.drift_counts
    n = len(fresh_scored.decisions)
    assert all(int(c.sum()) == n for c in counts.values())
    assert engine.bundle.baseline.report(counts).status == STABLE
