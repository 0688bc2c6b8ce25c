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
    INSUFFICIENT,
    SCORE,
    STABLE,
    WATCH,
    DriftBaseline,
    DriftReport,
    build_baseline,
    categorical_bins,
    merge_counts,
    numeric_bins,
    psi_from_counts,
    rows_of,
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
    summary = report.summary()
    assert {k: summary[k] for k in ("status", "score_psi", "features")} == {
        "status": ALERT, "score_psi": 0.05, "features": {"a": 0.15, "b": 0.5, "c": 0.01}}
    assert summary["rows"] is None  # no counts given: the plain limits, rows unknown
    assert summary["columns"]["a"] == {"psi": 0.15, "expected_psi": None, "psi_upper": None,
                                       "status": WATCH}
    assert DriftReport.from_values({SCORE: 0.12}, watch, alert).status == WATCH


def test_statuses_with_a_sampling_bound() -> None:
    """Drift only beyond both the limit and what sampling alone gives."""
    assert status_of(0.15, 0.1, 0.2, upper=0.18) == STABLE  # past the limit, within sampling
    assert status_of(0.19, 0.1, 0.2, upper=0.18) == WATCH
    assert status_of(0.25, 0.1, 0.2, upper=0.18) == ALERT
    assert status_of(0.25, 0.1, 0.2, upper=0.3) == STABLE
    assert status_of(0.05, 0.1, 0.2, upper=0.01) == STABLE  # past the bound, within the limit
    assert status_of(0.15, 0.1, 0.2, upper=0.01) == WATCH
    values = {SCORE: 0.15, "a": 0.25, "b": 0.25}
    report = DriftReport.from_values(values, 0.1, 0.2, rows=400, psi_upper={
        SCORE: 0.2, "a": 0.3, "b": 0.22})
    assert report.statuses == {SCORE: STABLE, "a": STABLE, "b": ALERT}
    assert report.status == ALERT and report.alerts == ["b"]


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
    # numeric columns from a model matrix count exactly as from the frame
    other = rng.normal(0, 1, (999, 2))
    matrix = np.column_stack([other[:, 0], batch["x"].to_numpy(), other[:, 1]])
    from_matrix = baseline.counts(batch.drop(columns="x"), scores, matrix, ["u", "x", "v"])
    assert {k: v.tolist() for k, v in from_matrix.items()} == {
        k: v.tolist() for k, v in whole.items()}


def test_baseline_round_trips_through_json() -> None:
    baseline, frame, scores = _small_baseline()
    again = DriftBaseline.from_dict(json.loads(json.dumps(baseline.to_dict())))
    assert again.specs == baseline.specs
    assert again.rows == baseline.rows == 1000
    old = {k: v for k, v in baseline.to_dict().items() if k != "rows"}  # stored before rows
    assert DriftBaseline.from_dict(old).rows == 0
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


def test_engine_counts_are_the_baseline_counts(engine: ScoringEngine, fresh_scored: object) -> None:
    """One counting rule: scoring's matrix path equals counting the named feature frame."""
    valid = fresh_scored.report.valid
    matrix = engine.features(valid)
    p = engine.predict(matrix)
    via_engine = engine.drift_counts(valid, matrix, p)
    named = engine.bundle.model.features_.frame(valid)  # every feature by name, ratios too
    via_frame = engine.bundle.baseline.counts(named, p)
    assert {k: v.tolist() for k, v in via_engine.items()} == {
        k: v.tolist() for k, v in via_frame.items()}
    assert {k: v.tolist() for k, v in fresh_scored.drift_counts.items()} == {
        k: v.tolist() for k, v in via_engine.items()}


# -- how much a PSI means: rows, sampling bounds, periods -----------------------------------


def _json_safe(summary: dict) -> dict:
    return json.loads(json.dumps(summary, allow_nan=False))  # raises on NaN or infinity


@pytest.mark.parametrize("rows", [0, 1, 50])
def test_too_few_rows_is_insufficient_data(engine: ScoringEngine, config: Config,
                                           to_csv: Callable, rows: int) -> None:
    baseline = engine.bundle.baseline
    if rows:  # even a recession sample is not an alert on so few rows
        df = generate_applications(rows, seed=80 + rows, drift="recession").drop(columns="default")
        valid = validate_batch(to_csv(df), config).valid
        matrix = engine.features(valid)
        counts = engine.drift_counts(valid, matrix, engine.predict(matrix))
    else:  # every row quarantined
        counts = {k: np.zeros(s.n_bins, dtype=np.int64) for k, s in baseline.specs.items()}
    report = baseline.report(counts)
    assert report.status == INSUFFICIENT == "insufficient_data"
    assert set(report.statuses.values()) == {INSUFFICIENT} and report.alerts == []
    summary = _json_safe(report.summary())
    assert summary["status"] == "insufficient_data"
    assert summary["rows"] == rows and summary["min_rows"] == 200
    assert set(summary["columns"]) == set(baseline.specs)
    if rows == 0:
        assert summary["score_psi"] is None and set(summary["features"].values()) == {None}
        assert all(c["expected_psi"] is None and c["psi_upper"] is None
                   for c in summary["columns"].values())
    else:
        assert all(math.isfinite(c["psi"]) and c["psi_upper"] > 0 and c["expected_psi"] > 0
                   for c in summary["columns"].values())
    # without a minimum: zero rows still are not stable; one row's PSI (in the several
    # units) is what sampling alone gives for one row; 50 recession rows are past it
    unbounded = baseline.report(counts, min_rows=0)
    assert unbounded.status == {0: INSUFFICIENT, 1: STABLE, 50: ALERT}[rows]
    if rows == 1:
        assert unbounded.score_psi > 1 and unbounded.status == STABLE


@pytest.fixture(scope="module")
def scored_pool(engine: ScoringEngine, config: Config,
                to_csv: Callable) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Same-population applications, scored once; batches are drawn from it."""
    df = generate_applications(20_000, seed=99).drop(columns="default")
    valid = validate_batch(to_csv(df), config).valid
    matrix = engine.features(valid)
    return valid, matrix, engine.predict(matrix)


@pytest.mark.parametrize("n", [100, 500, 5000])
def test_same_population_rarely_drifts_at_any_size(engine: ScoringEngine, scored_pool: tuple,
                                                   n: int) -> None:
    """200 same-population batches: a column is called watch/alert ~(1 - confidence) at most."""
    baseline, names = engine.bundle.baseline, engine.bundle.feature_names
    frame, matrix, p = scored_pool
    rng = np.random.default_rng(n)
    plain = ours = batches_flagged = verdicts = 0
    for _ in range(200):
        idx = rng.integers(0, len(frame), n)
        counts = baseline.counts(frame.iloc[idx], p[idx], matrix[idx], names)
        report = baseline.report(counts, min_rows=0, confidence=0.95)
        plain += sum(status_of(v, 0.1, 0.2) != STABLE
                     for v in [report.score_psi, *report.features.values()])
        ours += sum(s != STABLE for s in report.statuses.values())
        verdicts += len(report.statuses)
        batches_flagged += baseline.report(counts, min_rows=0, family_wise=True).status != STABLE
    assert ours / verdicts <= 0.075, ours / verdicts
    if n == 100:
        assert plain / verdicts > 0.25  # the plain 0.1 rule: a false alarm in a third of cases
        assert batches_flagged / 200 <= 0.15
    else:
        assert batches_flagged / 200 <= 0.05


def test_shifted_sample_of_500_is_an_alert(engine: ScoringEngine, config: Config,
                                           to_csv: Callable) -> None:
    df = generate_applications(500, seed=63, drift="recession").drop(columns="default")
    valid = validate_batch(to_csv(df), config).valid
    matrix = engine.features(valid)
    counts = engine.drift_counts(valid, matrix, engine.predict(matrix))
    for family_wise in (False, True):
        report = engine.bundle.baseline.report(counts, family_wise=family_wise)
        assert report.rows == len(valid) and report.status == ALERT
        assert {SCORE, "credit_score", "debt_to_income"} <= set(report.alerts), report.features
        col = report.columns()["credit_score"]
        assert col["psi"] > max(0.2, col["psi_upper"]) and col["psi_upper"] > col["expected_psi"]


def test_sampling_bound_is_the_psi_of_baseline_samples() -> None:
    """The bound describes FinFlow's own statistic: fresh draws, psi_from_counts, same floor."""
    from finflow_core.lending.psi_sampling import sampling_bound

    expected = (0.6, 0.3, 0.08, 0.02, 0.0, 0.0)  # a categorical column: rare code, no unseen
    bound = sampling_bound(expected, 100, 1e-4, 0.95)
    assert bound.method == "monte_carlo"
    rng = np.random.default_rng(123)
    draws = rng.multinomial(100, np.array(expected), size=4000)
    values = np.array([psi_from_counts(np.array(expected), c) for c in draws])
    assert values.mean() == pytest.approx(bound.mean, rel=0.05)
    assert 0.035 <= float(np.mean(values > bound.upper)) <= 0.065
    # a rare bin left empty is floored: sampling alone gives far more than chi2(3)/n here
    assert bound.upper > 1.3 * 7.81 / 100


@pytest.mark.parametrize("expected", [(0.1,) * 10 + (0.0,), (0.6, 0.3, 0.08, 0.02, 0.0, 0.0),
                                      (0.01, 0.04, 0.1, 0.15, 0.2, 0.2, 0.15, 0.1, 0.04, 0.01)])
def test_chi_square_agrees_with_monte_carlo_at_large_n(expected: tuple[float, ...]) -> None:
    from finflow_core.lending.psi_sampling import (
        chi_square_bound,
        monte_carlo_bound,
        sampling_bound,
    )

    n = 50_000
    bins = sum(e > 0 for e in expected)
    mc = monte_carlo_bound(np.array(expected), n, 1e-4, 0.95, draws=6000)
    chi = chi_square_bound(bins, n, 0.95)
    assert chi.mean == pytest.approx(mc.mean, rel=0.03)
    assert chi.upper == pytest.approx(mc.upper, rel=0.04)
    assert sampling_bound(expected, n).method == "chi_square"
    assert sampling_bound(expected, 100).method == "monte_carlo"
    assert sampling_bound(expected, n) == chi  # cheap at any n: no simulation


def test_bounds_shrink_with_n_and_count_the_baseline_sample() -> None:
    from finflow_core.lending.psi_sampling import effective_rows, sampling_bound

    deciles = (0.1,) * 10 + (0.0,)
    uppers = [sampling_bound(deciles, n).upper for n in (100, 1000, 10_000)]
    assert uppers[0] > 0.1 > uppers[1] > uppers[2]
    assert sampling_bound(deciles, 200) == sampling_bound(deciles, 200)  # seeded
    assert effective_rows(1000, 1000) == 500 and effective_rows(1000, 0) == 1000
    assert sampling_bound(deciles, 10_000, baseline_rows=10_000).mean == pytest.approx(
        2 * sampling_bound(deciles, 10_000).mean)
    with pytest.raises(ValueError, match="confidence"):
        sampling_bound(deciles, 100, confidence=1.0)


def test_period_counts_merge_to_the_concatenated_batch() -> None:
    """Typed-in applications: stored one by one, measured together once enough have arrived."""
    baseline, _, _ = _small_baseline()
    rng = np.random.default_rng(11)
    batch = pd.DataFrame({"x": rng.normal(0.8, 1, 400), "c": rng.choice(["a", "b", "z"], 400)})
    scores = rng.beta(2, 6, 400)
    stored = []  # as the store keeps them: JSON lists per batch, one application each at first
    edges = [0, *range(1, 40), 40, 120, 400]
    for lo, hi in zip(edges, edges[1:], strict=False):
        counts = baseline.counts(batch.iloc[lo:hi], scores[lo:hi])
        stored.append(json.loads(json.dumps({k: v.tolist() for k, v in counts.items()})))
    merged = merge_counts(stored)
    whole = baseline.counts(batch, scores)
    assert merged == {k: v.tolist() for k, v in whole.items()}
    assert rows_of(merged) == 400
    assert baseline.period_report(stored) == baseline.report(whole)
    assert baseline.period_report(stored[:39]).status == INSUFFICIENT  # 39 typed in so far
    assert baseline.period_report(stored).status == ALERT
    assert baseline.period_report([]).status == INSUFFICIENT
    with pytest.raises(ValueError, match="bins"):
        merge_counts([stored[0], {**stored[1], "x": [1, 2]}])
    with pytest.raises(ValueError, match="columns"):
        merge_counts([stored[0], {SCORE: stored[1][SCORE]}])
    with pytest.raises(ValueError, match="bins"):
        baseline.report({**merged, "c": [1, 2]})
    with pytest.raises(ValueError, match="confidence"):
        baseline.report(merged, confidence=95)
