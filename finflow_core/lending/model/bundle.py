"""What a trained model version carries: model, strategy, drift baseline, reference values."""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from finflow_core.lending.config import Config
from finflow_core.lending.drift import DriftBaseline, build_baseline
from finflow_core.lending.model.training import CreditModel, TrainingResult
from finflow_core.lending.model.training_data import TrainingDataCheck
from finflow_core.lending.strategy import LoanValues, Strategy


@dataclass
class ModelBundle:
    """Everything scoring needs from one model version, saved as one artifact."""

    version: str
    model: CreditModel
    model_name: str
    strategy: Strategy
    baseline: DriftBaseline
    feature_names: tuple[str, ...]
    categorical: dict[str, tuple[str, ...]]
    reference: dict[str, float]  # training medians: is a value "high" or "low"?
    required_columns: tuple[str, ...]
    dataset_name: str
    config_sha256: str
    card: dict[str, Any] = field(default_factory=dict)
    #: margin / loss / amount of each training loan, for what-ifs on the out-of-fold scores
    loan_values: dict[str, np.ndarray] | None = None
    notes: str = ""
    #: validated training rows with their out-of-fold probability, kept (inside the signed
    #: artifact) to compare this version with another on the same outcomes before promotion
    evaluation: pd.DataFrame | None = None

    def check_compatible(self, config: Config) -> None:
        """Refuse to score with a config that lacks columns this model was trained on."""
        from finflow_core.errors import ModelError

        declared = {c.name for c in config.columns}
        missing = [c for c in self.required_columns if c not in declared]
        if missing:
            raise ModelError(
                f"model {self.version} needs columns {missing} that the current config does not "
                "declare: use the config it was trained with, or train a new model",
                version=self.version, missing=missing,
            )


def new_version(training_sha256: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{training_sha256[:8]}"


def build_bundle(
    result: TrainingResult, frame: pd.DataFrame, config: Config, *, training_sha256: str,
    version: str | None = None, training_data: TrainingDataCheck | None = None,
) -> ModelBundle:
    """Bundle the champion with its strategy, drift baseline and model card.

    Pass ``training_data`` (from :func:`check_training_data`) to record in the card what
    the quality gate kept and quarantined, and whether the two differ.
    """
    champ = result.champion
    features = champ.model.features_.frame(frame)
    numeric = [f for f in config.feature_names if f not in config.categorical_features]
    cats = {c: config.column(c).categories for c in config.categorical_features}
    baseline = build_baseline(
        features, champ.model.oof_proba_, numeric, cats, bins=config.monitoring.bins,
        floor=config.monitoring.floor, watch=config.monitoring.psi_watch,
        alert=config.monitoring.psi_alert,
    )
    reference = {f: float(np.nanmedian(features[f].to_numpy(dtype=float))) for f in numeric}
    priced_by = {config.amount_column, config.rate_column, config.term_column} - {None}
    required = sorted(
        set(config.base_features)
        | {c for r in config.ratios for c in (*r.numerator, *r.denominator)}
        | priced_by
    )
    version = version or new_version(training_sha256)
    bundle = ModelBundle(
        version=version,
        model=champ.model,
        model_name=champ.name,
        strategy=champ.strategy,
        baseline=baseline,
        feature_names=tuple(config.feature_names),
        categorical={k: tuple(v) for k, v in cats.items()},
        reference=reference,
        required_columns=tuple(required),
        dataset_name=config.dataset_name,
        config_sha256=config.sha256,
        loan_values=asdict(LoanValues.from_frame(frame, config)),
        notes=config.model.notes,
    )
    bundle.card = model_card(bundle, result, training_sha256, pricing=config.pricing.to_dict(),
                             training_data=training_data)
    return bundle


def model_card(
    bundle: ModelBundle, result: TrainingResult, training_sha256: str, *,
    pricing: dict[str, Any] | None = None, training_data: TrainingDataCheck | None = None,
) -> dict[str, Any]:
    """The model card (JSON): what was trained, on what, how well, and how it decides.

    It says which pricing figures were assumptions, how the cut-off was chosen, whether
    the bands leave out a decision, and (when given) what the training data check found.
    Figures that do not exist (profit without pricing) are null.
    """
    import joblib
    import lightgbm
    import shap
    import sklearn

    champ = result.champion
    s = champ.strategy
    bundle_notes = bundle.notes
    card = {
        "version": bundle.version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": bundle.dataset_name,
        "config_sha256": bundle.config_sha256,
        "training_data_sha256": training_sha256,
        "rows": result.rows,
        "default_rate": result.default_rate,
        "features": list(bundle.feature_names),
        "model": champ.name,
        "champion": champ.card(),
        "challengers": [c.card() for c in result.candidates if c is not champ],
        "cv_folds": champ.model.cv,
        "calibration": champ.model.calibration_,
        "notes": bundle_notes,
        "metrics_out_of_fold": champ.metrics,
        "strategy": {
            "cutoff": s.cutoff,
            "low_edge": s.low_edge,
            "high_edge": s.high_edge,
            "automation_target": s.automation_target,
            "automation_rate": s.automation_rate,
            "band_shares": s.band_shares,
            "oof_profit_banded": s.profit,
            "oof_profit_cutoff_only": s.profit_cutoff_only,
            "oof_profit_all_reviewed": s.profit_all_reviewed,
            "roi": s.roi,
            "cutoff_method": s.cutoff_method,
            "cutoff_target": s.cutoff_target,
            "cutoff_approval_rate": s.cutoff_approval_rate,
            "cutoff_bad_rate": s.cutoff_bad_rate,
            "never_declines": s.never_declines,
            "never_approves": s.never_approves,
            "warning": s.warning,
        },
        "pricing": pricing,
        "training_data": None if training_data is None else training_data.to_dict(),
        "profit_curve": s.curve,
        "roc": result.roc,
        "drift_baseline": bundle.baseline.to_dict(),
        "libraries": {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "lightgbm": lightgbm.__version__,
            "shap": shap.__version__,
            "pandas": pd.__version__,
            "numpy": np.__version__,
            "joblib": joblib.__version__,
        },
    }
    for key in ("champion", "challengers", "strategy", "profit_curve", "training_data"):
        card[key] = json_safe(card[key])  # no NaN in strict JSON (nor in PostgreSQL)
    return card


def json_safe(value: Any) -> Any:
    """The value with NaN and infinite numbers as null (strict JSON, and PostgreSQL's)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    return value
