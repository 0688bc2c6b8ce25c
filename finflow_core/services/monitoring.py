"""Drift monitoring: the runs, the history, and baseline against batch per feature."""

from __future__ import annotations

import pandas as pd

from finflow_core.errors import NotFound
from finflow_core.lending.drift import status_of
from finflow_core.lending.terms import DriftStatus
from finflow_core.services.access import Action
from finflow_core.services.base import Service
from finflow_core.services.scoring_engines import load_version
from finflow_core.store.batch_queries import DriftRun, drift_history


def flagged(run: DriftRun, watch: float, alert: float) -> list[str]:
    """Features of a drift run at watch or alert (by the same rule as the run's status)."""
    return [name for name, psi in run.features.items()
            if psi is not None and status_of(psi, watch, alert) != DriftStatus.STABLE]


def psi_table(runs: list[DriftRun]) -> pd.DataFrame:
    """One row per batch and column (score and every feature): PSI over time."""
    rows = []
    for r in runs:
        rows.append({"batch_id": r.batch_id, "week_start": r.week_start, "column": "score",
                     "psi": r.score_psi, "computed_at": r.computed_at})
        rows += [{"batch_id": r.batch_id, "week_start": r.week_start, "column": name, "psi": psi,
                  "computed_at": r.computed_at} for name, psi in r.features.items()]
    return pd.DataFrame(rows, columns=["batch_id", "week_start", "column", "psi", "computed_at"])


class DriftService(Service):
    """Analysts and managers watch whether the population still matches the model's."""

    def runs(self, limit: int = 52) -> list[DriftRun]:
        """Drift runs, newest first."""
        self.require(Action.VIEW_DRIFT)
        return drift_history(self.ctx.store, limit)

    def distribution(self, run: DriftRun, column: str) -> pd.DataFrame:
        """Baseline share against the batch's share, bin by bin, for one column of one run."""
        self.require(Action.VIEW_DRIFT)
        spec = load_version(self.ctx, run.model_version).baseline.specs.get(column)
        counts = run.counts.get(column)
        if spec is None or counts is None:
            raise NotFound(f"drift run of batch {run.batch_id} has no counts for {column!r}", column=column)
        total = sum(counts) or 1
        return pd.DataFrame({
            "bin": spec.labels,
            "baseline": list(spec.expected) if spec.expected else [0.0] * spec.n_bins,
            "batch": [c / total for c in counts],
        })
