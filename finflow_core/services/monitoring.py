"""Drift monitoring views: the latest run, the history, and baseline against batch per feature."""

from __future__ import annotations

from typing import Any

import pandas as pd

from finflow_core.lending.drift import ALERT, WATCH, status_of
from finflow_core.lending.model.bundle import ModelBundle
from finflow_core.services.access import require
from finflow_core.services.auth import Principal
from finflow_core.services.batches import drift_history
from finflow_core.store import Store

ADVICE = {
    "stable": "The population matches the training baseline. No action needed.",
    WATCH: "Some inputs are moving away from the training baseline. Watch the next batches and "
           "check the features marked 'watch'.",
    ALERT: "The population has shifted materially (PSI above the alert limit). Retrain the model on "
           "recent outcomes, and review the strategy edges until a new champion is promoted.",
}


def drift_runs(store: Store, actor: Principal, limit: int = 52) -> list[dict[str, Any]]:
    require(actor, "view_drift")
    return drift_history(store, limit)


def flagged(run: dict[str, Any], watch: float, alert: float) -> list[str]:
    """Features of a drift run at watch or alert (by the same rule as the run's status)."""
    return [name for name, psi in run["features"].items()
            if psi is not None and status_of(psi, watch, alert) != "stable"]


def psi_table(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per batch and column (score and every feature): PSI over time."""
    rows = []
    for r in runs:
        rows.append({"batch_id": r["batch_id"], "week_start": r["week_start"], "column": "score",
                     "psi": r["score_psi"], "computed_at": r["computed_at"]})
        for name, psi in r["features"].items():
            rows.append({"batch_id": r["batch_id"], "week_start": r["week_start"], "column": name,
                         "psi": psi, "computed_at": r["computed_at"]})
    return pd.DataFrame(rows, columns=["batch_id", "week_start", "column", "psi", "computed_at"])


def distribution(bundle: ModelBundle, run: dict[str, Any], column: str) -> pd.DataFrame:
    """Baseline share against the batch's share, bin by bin, for one column of one run."""
    spec = bundle.baseline.specs[column]
    counts = run["counts"].get(column)
    if counts is None:
        raise KeyError(f"drift run of batch {run['batch_id']} has no counts for {column!r}")
    total = sum(counts) or 1
    return pd.DataFrame({
        "bin": spec.labels,
        "baseline": list(spec.expected) if spec.expected else [0.0] * spec.n_bins,
        "batch": [c / total for c in counts],
    })
