"""Discrimination and calibration figures a credit model card reports."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)


def ks_statistic(y: np.ndarray, p: np.ndarray) -> float:
    """Largest gap between the score distributions of defaulters and non-defaulters."""
    fpr, tpr, _ = roc_curve(y, p)
    return float(np.max(tpr - fpr))


def classification_metrics(y: np.ndarray, p: np.ndarray, cutoff: float) -> dict[str, float]:
    """AUC, Gini, KS, Brier, and precision/recall/F1 for 'default' predicted at p >= cutoff."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    auc = float(roc_auc_score(y, p))
    flagged = (p >= cutoff).astype(int)
    return {
        "auc": round(auc, 4),
        "gini": round(2 * auc - 1, 4),
        "ks": round(ks_statistic(y, p), 4),
        "brier": round(float(brier_score_loss(y, p)), 5),
        "precision": round(float(precision_score(y, flagged, zero_division=0)), 4),
        "recall": round(float(recall_score(y, flagged, zero_division=0)), 4),
        "f1": round(float(f1_score(y, flagged, zero_division=0)), 4),
        "mean_predicted": round(float(p.mean()), 4),
        "observed_default_rate": round(float(y.mean()), 4),
    }


def roc_points(y: np.ndarray, p: np.ndarray, max_points: int = 101) -> dict[str, list[float]]:
    """A thinned ROC curve small enough to keep in a model card and draw."""
    fpr, tpr, _ = roc_curve(y, p)
    idx = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).astype(int))
    return {"fpr": [round(float(v), 4) for v in fpr[idx]], "tpr": [round(float(v), 4) for v in tpr[idx]]}
