"""Scoring: one decision per valid application, consistent bands, profit and reasons."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from finflow_core.errors import ModelError
from finflow_core.lending.config import Config
from finflow_core.lending.model.bundle import ModelBundle
from finflow_core.lending.scoring import (
    DECISION_COLUMNS,
    REASON_SEP,
    ScoringEngine,
    needs_reasons,
    reason_texts,
)
from finflow_core.lending.strategy import BAND_DECISION, LoanValues, assign_bands, expected_values


def test_one_row_per_valid_application(fresh_scored: object) -> None:
    d, report = fresh_scored.decisions, fresh_scored.report
    assert tuple(d.columns) == DECISION_COLUMNS
    assert len(d) == report.rows_valid == len(fresh_scored.source)
    assert d["row_number"].tolist() == report.row_numbers.tolist()
    assert d["application_id"].tolist() == report.valid["application_id"].tolist()
    np.testing.assert_array_equal(d["loan_amount"], report.valid["loan_amount"])


def test_probabilities_bands_and_decisions(fresh_scored: object, engine: ScoringEngine) -> None:
    d = fresh_scored.decisions
    p = d["probability"].to_numpy()
    assert ((p > 0) & (p < 1)).all()
    assert set(d["band"]) == {"low", "medium", "high"}
    assert (d["decision"] == d["band"].map(BAND_DECISION)).all()
    s = engine.strategy
    assert d["band"].tolist() == assign_bands(p, s.low_edge, s.high_edge).tolist()
    assert (p[d["band"] == "low"] < s.low_edge).all()
    assert (p[d["band"] == "high"] >= s.high_edge).all()
    # the probability is the model's calibrated probability of default
    proba = engine.bundle.model.predict_proba(fresh_scored.report.valid)[:, 1]
    np.testing.assert_allclose(p, proba)
    # roughly the automation the strategy was fitted for
    assert (d["band"] != "medium").mean() > 0.6


def test_expected_profit(fresh_scored: object, config: Config) -> None:
    d, valid = fresh_scored.decisions, fresh_scored.report.valid
    approve, review = expected_values(d["probability"].to_numpy(),
                                      LoanValues.from_frame(valid, config), config.economics)
    np.testing.assert_allclose(d["ev_approve"], approve)
    np.testing.assert_allclose(d["ev_review"], review)
    want = np.select([d["band"] == "low", d["band"] == "medium"], [approve, review], 0.0)
    np.testing.assert_allclose(d["expected_profit"], want)
    assert (d.loc[d["band"] == "high", "expected_profit"] == 0).all()
    assert d.loc[d["band"] == "low", "expected_profit"].sum() > 0


def test_reasons_only_for_review_and_decline(fresh_scored: object) -> None:
    d = fresh_scored.decisions
    n = d["reasons"].map(len)
    assert (n[d["decision"] == "approve"] == 0).all()
    assert (n[d["decision"] != "approve"] >= 1).all()
    np.testing.assert_array_equal(needs_reasons(d["band"].to_numpy()), (d["decision"] != "approve"))
    first = d.loc[n >= 2, "reasons"].iloc[0]
    assert set(first[0]) == {"feature", "text", "value", "contribution"}
    assert reason_texts(first) == REASON_SEP.join(r["text"] for r in first)
    assert reason_texts([]) == ""


def test_chunks_score_like_the_whole(engine: ScoringEngine, fresh_scored: object) -> None:
    valid, rows = fresh_scored.report.valid.head(400), fresh_scored.report.row_numbers[:400]
    whole_counts: dict[str, np.ndarray] = {}
    timings: dict[str, float] = {}
    whole = engine.score(valid, rows, drift=whole_counts, timings=timings)
    assert {"features", "predict", "explain", "drift"} <= set(timings)
    counts: dict[str, np.ndarray] = {}
    parts = [engine.score(valid.iloc[i:i + 150].reset_index(drop=True), rows[i:i + 150], drift=counts)
             for i in range(0, 400, 150)]
    joined = pd.concat(parts, ignore_index=True)
    pd.testing.assert_frame_equal(joined.drop(columns="reasons"), whole.drop(columns="reasons"))
    def words(d: pd.DataFrame) -> list:
        return [[(r["feature"], r["text"]) for r in rs] for rs in d["reasons"]]

    def weights(d: pd.DataFrame) -> list:
        return [r["contribution"] for rs in d["reasons"] for r in rs]

    assert words(joined) == words(whole)
    assert weights(joined) == pytest.approx(weights(whole), abs=1e-9)
    assert counts and set(counts) == set(whole_counts)  # not empty: the loop below checks
    for k in counts:
        assert counts[k].tolist() == whole_counts[k].tolist()
        assert counts[k].sum() == 400


def test_default_row_numbers_and_no_explanations(bundle: ModelBundle, config: Config,
                                                 fresh_scored: object) -> None:
    quiet = ScoringEngine(bundle, config, explain=False)
    d = quiet.score(fresh_scored.report.valid.head(100))
    assert d["row_number"].tolist() == list(range(1, 101))
    assert (d["reasons"].map(len) == 0).all()


def test_strategy_override(bundle: ModelBundle, config: Config, fresh_scored: object) -> None:
    valid = fresh_scored.report.valid.head(100)
    review_all = ScoringEngine(bundle, config, strategy=bundle.strategy.with_edges(0.0, 1.0),
                               explain=False)
    assert set(review_all.score(valid)["decision"]) == {"review"}
    approve_all = ScoringEngine(bundle, config, strategy=bundle.strategy.with_edges(1.0, 1.0),
                                explain=False)
    assert set(approve_all.score(valid)["decision"]) == {"approve"}


def test_config_without_the_model_columns_is_refused(bundle: ModelBundle, config: Config) -> None:
    other = dataclasses.replace(
        config, columns=tuple(c for c in config.columns if c.name != "credit_score")
    )
    with pytest.raises(ModelError, match=r"needs columns \['credit_score'\]"):
        ScoringEngine(bundle, other)


def test_scoring_an_empty_chunk_gives_an_empty_table(engine: ScoringEngine,
                                                     fresh_scored: object) -> None:
    counts: dict[str, np.ndarray] = {}
    d = engine.score(fresh_scored.report.valid.head(0), np.array([], dtype=np.int64), drift=counts)
    assert len(d) == 0
    assert tuple(d.columns) == DECISION_COLUMNS
