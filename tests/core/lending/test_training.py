"""Training: stratified CV, calibration, champion choice, refusals, metrics and model card."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from finflow_core.errors import TrainingError
from finflow_core.lending.config import Config
from finflow_core.lending.model.bundle import ModelBundle
from finflow_core.lending.model.metrics import classification_metrics, ks_statistic, roc_points
from finflow_core.lending.model.training import (
    Calibrator,
    CreditModel,
    TrainingResult,
    make_candidate,
    train,
)
from finflow_core.store.model_files import read_card


def test_five_stratified_folds(trained: TrainingResult, training_frame: pd.DataFrame,
                               config: Config) -> None:
    y = training_frame[config.target_column].to_numpy(dtype=int)
    model = trained.champion.model
    assert model.cv == config.model.cv_folds == 5
    folds = model.folds_
    assert sorted(np.unique(folds)) == [0, 1, 2, 3, 4]
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 1
    defaults = np.bincount(folds, weights=y)
    assert defaults.max() - defaults.min() <= 1  # stratified: same number of defaults per fold
    for c in trained.candidates:  # every candidate is judged on the same folds
        np.testing.assert_array_equal(c.model.folds_, folds)


def test_candidates_and_champion(trained: TrainingResult, config: Config) -> None:
    assert [c.name for c in trained.candidates] == list(config.model.candidates)
    best = max(trained.candidates, key=lambda c: c.strategy.profit)
    assert trained.champion is best
    assert trained.champion.strategy.profit == max(c.strategy.profit for c in trained.candidates)
    for c in trained.candidates:
        assert c.metrics["auc"] > 0.75
        assert c.model.calibration_ in ("isotonic", "sigmoid")
        assert c.card()["oof_profit"] == c.strategy.profit
    assert trained.rows == 4000
    assert trained.default_rate == pytest.approx(0.1562, abs=1e-4)
    assert len(trained.roc["fpr"]) == len(trained.roc["tpr"]) <= 101


def test_out_of_fold_probabilities_are_calibrated(trained: TrainingResult,
                                                  training_frame: pd.DataFrame,
                                                  config: Config) -> None:
    y = training_frame[config.target_column].to_numpy(dtype=int)
    for c in trained.candidates:
        oof = c.model.oof_proba_
        assert oof.shape == y.shape
        assert ((oof > 0) & (oof < 1)).all()
        assert abs(oof.mean() - y.mean()) < 0.01
        # cross-fitted calibration: the reported metrics are those of the OOF probabilities
        assert c.metrics["auc"] == pytest.approx(roc_auc_score(y, oof), abs=1e-4)


def test_fresh_sample_is_calibrated_and_discriminates(fresh_scored: object) -> None:
    p = fresh_scored.decisions["probability"].to_numpy()
    y = fresh_scored.source["default"].to_numpy()
    assert abs(p.mean() - y.mean()) < 0.02
    assert roc_auc_score(y, p) > 0.75
    # defaults concentrate in the riskiest fifth
    top = p >= np.quantile(p, 0.8)
    assert y[top].mean() > 2.5 * y.mean()


def test_credit_model_predicts_probabilities(trained: TrainingResult,
                                             training_frame: pd.DataFrame) -> None:
    model = trained.champion.model
    sample = training_frame.head(50)
    proba = model.predict_proba(sample)
    assert proba.shape == (50, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert ((proba[:, 1] >= 1e-4) & (proba[:, 1] <= 1 - 1e-4)).all()
    assert set(np.unique(model.predict(sample))) <= {0, 1}
    np.testing.assert_array_equal(model.classes_, [0, 1])
    unfitted = clone(model)
    assert not hasattr(unfitted, "pipeline_")
    assert unfitted.get_params()["cv"] == 5


def test_calibrator_is_monotone() -> None:
    rng = np.random.default_rng(0)
    raw = rng.random(2000)
    y = (rng.random(2000) < raw**2).astype(int)
    grid = np.linspace(0, 1, 101)
    for method in ("isotonic", "sigmoid"):
        p = Calibrator(method).fit(raw, y).predict(grid)
        assert np.all(np.diff(p) >= 0)
        assert p.min() >= 1e-4 and p.max() <= 1 - 1e-4
    with pytest.raises(ValueError, match="unknown calibration"):
        Calibrator("beta").fit(raw, y)


@pytest.mark.parametrize(
    ("rows", "target", "match"),
    [
        pytest.param(400, 0, "20 defaults", id="one-class-all-repaid"),
        pytest.param(400, 1, "at least 200 rows", id="one-class-all-defaulted"),
        pytest.param(150, None, "at least 200 rows", id="too-few-rows"),
        pytest.param(400, "two", "only 0 and 1", id="non-binary"),
        pytest.param(400, "nan", "only 0 and 1", id="missing-outcome"),
    ],
)
def test_training_refuses_unusable_targets(training_frame: pd.DataFrame, config: Config,
                                           rows: int, target: object, match: str) -> None:
    df = training_frame.head(rows).copy()
    if target == "two":
        df["default"] = df["default"].astype(float)
        df.iloc[3, df.columns.get_loc("default")] = 2
    elif target == "nan":
        df["default"] = df["default"].astype(float)
        df.iloc[5, df.columns.get_loc("default")] = np.nan
    elif target is not None:
        df["default"] = target
    with pytest.raises(TrainingError, match=match) as exc:
        train(df, config)
    assert exc.value.exit_code == 6


def test_training_needs_the_target_column(training_frame: pd.DataFrame, config: Config) -> None:
    with pytest.raises(TrainingError, match="no target column 'default'"):
        train(training_frame.drop(columns="default"), config)


def test_unknown_candidate(config: Config) -> None:
    with pytest.raises(TrainingError, match="unknown model candidate 'xgboost'"):
        make_candidate("xgboost", config)
    pipe = make_candidate("random_forest", config)
    assert pipe.named_steps["model"].n_estimators == 60
    assert list(pipe.named_steps) == ["features", "model"]
    assert isinstance(CreditModel(pipe).pipeline, type(pipe))


def test_metrics_hand_example() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    m = classification_metrics(y, p, cutoff=0.5)
    # AUC: of 9 (default, repaid) pairs, 8 are ordered correctly
    assert m["auc"] == pytest.approx(8 / 9, abs=1e-4)
    assert m["gini"] == pytest.approx(2 * 8 / 9 - 1, abs=1e-4)
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2), abs=1e-5)
    # flagged at p >= 0.5: rows 4 and 6, both defaults; one default missed
    assert (m["precision"], m["recall"], m["f1"]) == (1.0, pytest.approx(0.6667, abs=1e-4),
                                                      pytest.approx(0.8, abs=1e-4))
    # KS: largest gap between the cumulative score distributions of the two classes
    gaps = [abs(np.mean(p[y == 1] <= t) - np.mean(p[y == 0] <= t)) for t in p]
    assert ks_statistic(y, p) == pytest.approx(max(gaps))
    assert m["ks"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["mean_predicted"] == pytest.approx(p.mean(), abs=1e-4)
    assert m["observed_default_rate"] == 0.5
    roc = roc_points(y, p, max_points=3)
    assert roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0 and len(roc["fpr"]) == 3


def test_model_card_contents(bundle: ModelBundle, trained: TrainingResult, config: Config,
                             training_frame: pd.DataFrame) -> None:
    card = bundle.card
    json.dumps(card)  # plain JSON
    assert card["version"] == bundle.version
    datetime.fromisoformat(card["created_at"])
    assert len(card["training_data_sha256"]) == 64
    assert card["rows"] == len(training_frame) == 4000
    assert card["default_rate"] == trained.default_rate
    assert card["features"] == list(config.feature_names)
    assert card["model"] == trained.champion.name == card["champion"]["name"]
    assert [c["name"] for c in card["challengers"]] == [
        c.name for c in trained.candidates if c is not trained.champion
    ]
    assert card["cv_folds"] == 5
    metrics = card["metrics_out_of_fold"]
    for key in ("auc", "gini", "ks", "brier", "precision", "recall", "f1"):
        assert isinstance(metrics[key], float), key
    assert metrics["gini"] == pytest.approx(2 * metrics["auc"] - 1, abs=2e-4)
    strategy = card["strategy"]
    s = trained.champion.strategy
    assert (strategy["cutoff"], strategy["low_edge"], strategy["high_edge"]) == (
        s.cutoff, s.low_edge, s.high_edge
    )
    assert strategy["automation_rate"] >= config.strategy.automation_target - 1e-4
    # how the cut-off was chosen, and on which pricing figures
    assert (strategy["cutoff_method"], strategy["cutoff_target"]) == ("profit", None)
    assert strategy["never_declines"] is False and strategy["warning"] is None
    assert 0 < strategy["cutoff_approval_rate"] < 1 and 0 < strategy["cutoff_bad_rate"] < 1
    assert card["pricing"]["mode"] == "file" and card["pricing"]["assumed"] == []
    assert card["pricing"]["rate_column"] == "interest_rate"
    assert card["training_data"] is None  # recorded when train passes check_training_data
    for lib in ("python", "scikit-learn", "lightgbm", "shap", "pandas", "numpy", "joblib"):
        assert card["libraries"][lib]
    assert card["drift_baseline"]["specs"]["credit_score"]["kind"] == "numeric"


def test_saved_card_records_the_artifact_hash(saved_model: Path) -> None:
    card = read_card(saved_model)
    digest = hashlib.sha256((saved_model / "model.joblib").read_bytes()).hexdigest()
    assert card["artifact_sha256"] == digest
    assert card["artifact_bytes"] == (saved_model / "model.joblib").stat().st_size
    assert len(card["signature"]) == 64
