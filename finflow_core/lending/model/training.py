"""Model training: candidate pipelines, stratified cross-validation, calibration, champion.

Every candidate is scored out-of-fold; the calibrator is fitted on out-of-fold scores
(never on in-sample ones, which a forest makes too extreme) and the reported out-of-fold
probabilities are cross-fitted, so the profit and calibration figures are honest.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from finflow_core.errors import TrainingError
from finflow_core.lending.config import Config
from finflow_core.lending.features import FeatureBuilder
from finflow_core.lending.model.metrics import classification_metrics, roc_points
from finflow_core.lending.strategy import LoanValues, Strategy, fit_strategy

P_MIN, P_MAX = 1e-4, 1 - 1e-4
MIN_ROWS, MIN_DEFAULTS = 200, 20


class Calibrator(BaseEstimator):
    """Monotone map from a model's raw score to a probability of default."""

    def __init__(self, method: str = "isotonic") -> None:
        self.method = method

    def fit(self, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        raw = np.asarray(raw, dtype=float)
        if self.method == "isotonic":
            self.model_ = IsotonicRegression(out_of_bounds="clip", y_min=P_MIN, y_max=P_MAX)
            self.model_.fit(raw, y)
        elif self.method == "sigmoid":
            self.model_ = LogisticRegression(C=1e6).fit(_logit(raw)[:, None], y)
        else:
            raise ValueError(f"unknown calibration {self.method!r}: use 'isotonic' or 'sigmoid'")
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=float)
        if self.method == "isotonic":
            p = self.model_.predict(raw)
        else:
            p = self.model_.predict_proba(_logit(raw)[:, None])[:, 1]
        return np.clip(p, P_MIN, P_MAX)


class CreditModel(ClassifierMixin, BaseEstimator):
    """A feature pipeline plus a calibrator fitted on out-of-fold scores.

    Parameters
    ----------
    pipeline : an unfitted ``Pipeline([("features", FeatureBuilder), ("model", classifier)])``.
    calibration : "isotonic", "sigmoid", or "auto" (the one with lower out-of-fold log loss).
    cv : number of stratified folds.
    random_state : seed of the fold split.
    """

    def __init__(
        self, pipeline: Pipeline | None = None, calibration: str = "auto", cv: int = 5,
        random_state: int = 42,
    ) -> None:
        self.pipeline = pipeline
        self.calibration = calibration
        self.cv = cv
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> CreditModel:
        if self.pipeline is None:
            raise ValueError("CreditModel needs a pipeline: build one with make_candidate()")
        y = np.asarray(y).astype(int)
        folds = StratifiedKFold(self.cv, shuffle=True, random_state=self.random_state)
        self.folds_ = np.empty(len(y), dtype=np.int64)
        oof_raw = np.empty(len(y), dtype=float)
        for k, (tr, te) in enumerate(folds.split(np.zeros(len(y)), y)):
            model = clone(self.pipeline).fit(X.iloc[tr], y[tr])
            oof_raw[te] = _positive_proba(model, X.iloc[te])
            self.folds_[te] = k
        # cross-fitted calibration: each fold calibrated by a map fitted on the others;
        # "auto" keeps the method with the lower out-of-fold log loss
        methods = ("isotonic", "sigmoid") if self.calibration == "auto" else (self.calibration,)
        candidates = {m: self._cross_fit(m, oof_raw, y) for m in methods}
        self.calibration_ = min(candidates, key=lambda m: log_loss(y, candidates[m]))
        self.oof_raw_ = oof_raw
        self.oof_proba_ = candidates[self.calibration_]
        self.calibrator_ = Calibrator(self.calibration_).fit(oof_raw, y)
        self.pipeline_ = clone(self.pipeline).fit(X, y)
        self.classes_ = np.array([0, 1])
        return self

    def _cross_fit(self, method: str, raw: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.empty(len(y), dtype=float)
        for k in range(self.cv):
            te = self.folds_ == k
            out[te] = Calibrator(method).fit(raw[~te], y[~te]).predict(raw[te])
        return out

    def predict_raw(self, X: pd.DataFrame) -> np.ndarray:
        return _positive_proba(self.pipeline_, X)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self.calibrator_.predict(self.predict_raw(X))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    @property
    def features_(self) -> FeatureBuilder:
        return self.pipeline_.named_steps["features"]

    @property
    def estimator_(self) -> Any:
        return self.pipeline_.named_steps["model"]


def make_candidate(name: str, config: Config, *, n_jobs: int = -1) -> Pipeline:
    """The unfitted pipeline for a named candidate, with its parameters from config."""
    params = dict(config.model.params.get(name, {}))
    defaults: dict[str, Any] = {"random_state": config.model.random_state}
    if name == "random_forest":
        est: Any = RandomForestClassifier(**{**defaults, "n_jobs": n_jobs, **params})
    elif name == "lightgbm":
        import lightgbm as lgb

        est = lgb.LGBMClassifier(**{**defaults, "n_jobs": n_jobs, "verbose": -1, **params})
    elif name == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier

        est = HistGradientBoostingClassifier(**{**defaults, **params})
    else:
        raise TrainingError(
            f"unknown model candidate {name!r}: use random_forest, lightgbm or hist_gradient_boosting",
            candidate=name,
        )
    return Pipeline([("features", FeatureBuilder.from_config(config)), ("model", est)])


@dataclass
class CandidateResult:
    name: str
    model: CreditModel
    metrics: dict[str, float]
    strategy: Strategy
    fit_seconds: float
    costs: dict[str, float] = field(default_factory=dict)

    def card(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "metrics": self.metrics,
            "oof_profit": self.strategy.profit,
            "cutoff": self.strategy.cutoff,
            "cutoff_method": self.strategy.cutoff_method,
            "cutoff_approval_rate": self.strategy.cutoff_approval_rate,
            "cutoff_bad_rate": self.strategy.cutoff_bad_rate,
            "automation_rate": self.strategy.automation_rate,
            "fit_seconds": round(self.fit_seconds, 2),
            **self.costs,
        }


@dataclass
class TrainingResult:
    """All candidates, the champion, and the out-of-fold figures behind the choice."""

    champion: CandidateResult
    candidates: list[CandidateResult]
    rows: int
    default_rate: float
    roc: dict[str, list[float]] = field(default_factory=dict)


def train(frame: pd.DataFrame, config: Config) -> TrainingResult:
    """Fit every configured candidate with cross-validation; the champion is the better one
    by the cut-off rule: out-of-fold profit, or the target's figure when cut by a target."""
    target = config.target_column
    if target not in frame.columns:
        raise TrainingError(
            f"training data has no target column {target!r}: add the observed outcome column",
            column=target,
        )
    if len(frame) == 0:
        raise TrainingError(
            "training data has no valid rows: every row was quarantined; see the quarantine "
            "report (check_training_data names the rules that broke)", rows=0, defaults=0,
        )
    y = pd.to_numeric(frame[target], errors="coerce")
    if y.isna().any() or not set(y.unique()) <= {0, 1}:
        raise TrainingError(f"target column {target!r} must hold only 0 and 1", column=target)
    y_arr = y.to_numpy(dtype=int)
    n_def = int(y_arr.sum())
    if len(y_arr) < MIN_ROWS or n_def < MIN_DEFAULTS or len(y_arr) - n_def < MIN_DEFAULTS:
        raise TrainingError(
            f"training needs at least {MIN_ROWS} rows with {MIN_DEFAULTS} defaults and "
            f"{MIN_DEFAULTS} repaid loans; got {len(y_arr)} rows with {n_def} defaults",
            rows=len(y_arr), defaults=n_def,
        )
    values = LoanValues.from_frame(frame, config)
    results = []
    for name in config.model.candidates:
        started = time.perf_counter()
        model = CreditModel(
            make_candidate(name, config), calibration=config.model.calibration,
            cv=config.model.cv_folds, random_state=config.model.random_state,
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*feature names.*")
            model.fit(frame, y_arr)
        strategy = fit_strategy(model.oof_proba_, y_arr, values, config)
        metrics = classification_metrics(y_arr, model.oof_proba_, strategy.cutoff)
        fit_seconds = time.perf_counter() - started
        results.append(CandidateResult(name, model, metrics, strategy, fit_seconds,
                                       serving_costs(model, frame)))
    # higher out-of-fold profit, or what the cut-off rule targets (approvals at a bad-rate
    # ceiling, or the bad rate at an approval rate); ties go to the first candidate
    champion = max(results, key=lambda r: r.strategy.objective)
    return TrainingResult(
        champion=champion,
        candidates=results,
        rows=len(y_arr),
        default_rate=round(float(y_arr.mean()), 4),
        roc=roc_points(y_arr, champion.model.oof_proba_),
    )


def serving_costs(model: CreditModel, frame: pd.DataFrame, rows: int = 200) -> dict[str, float]:
    """What a candidate costs where people wait: scoring speed and TreeSHAP per explained row.

    Measured at training so the model card shows the trade-off the champion choice made
    (every review and decline case is explained, so SHAP cost scales with the batch).
    """
    import shap

    sample = frame.iloc[: min(rows, len(frame))]
    matrix = model.features_.transform(sample)
    started = time.perf_counter()
    model.predict_proba(sample)
    score_seconds = time.perf_counter() - started
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer = shap.TreeExplainer(model.estimator_)
        started = time.perf_counter()
        explainer.shap_values(matrix, check_additivity=False)
        shap_seconds = time.perf_counter() - started
    return {
        "score_ms_per_row": round(1000 * score_seconds / len(sample), 4),
        "explain_ms_per_row": round(1000 * shap_seconds / len(sample), 4),
    }


def _positive_proba(model: Any, X: pd.DataFrame) -> np.ndarray:
    return np.asarray(model.predict_proba(X))[:, 1]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))
