"""Scoring under a running champion-challenger test: the same interface as a ScoringEngine.

A **split** sends each application whose arm (:func:`~finflow_core.lending.experiments.assign_arms`,
a keyed hash of the application id and the experiment's seed) is the challenger to the
challenger's model and strategy, the rest to the champion; a **shadow** has the champion
decide every application and scores each with the challenger too (kept in ``shadow_scores``).
Both may run at once. The frame returned is in the input's order, with two extra columns:
``model_version`` (the version that scored and decided the row) and ``arm`` (``None`` when no
split runs), plus ``shadow_probability``, ``shadow_band`` and ``shadow_ev_approve`` when a
shadow runs.

Drift is counted with the champion's scores of the champion's rows only: the batch's drift
is measured against the champion's baseline (the challenger's probabilities belong to another
model, so its bins would not compare), and a 10% arm leaves the measure a little noisier but
unbiased, since arms are assigned at random.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from finflow_core.errors import Conflict
from finflow_core.lending.experiments import assign_arms
from finflow_core.lending.scoring import ScoringEngine
from finflow_core.lending.terms import Arm

#: Columns a split or shadow run adds to a scored frame.
ARM_COLUMNS = ("model_version", "arm")
SHADOW_COLUMNS = ("shadow_probability", "shadow_band", "shadow_ev_approve")


class ExperimentNeedsLocalRun(Conflict):
    """A champion-challenger test is running and the run's engine cannot route by arm."""


@dataclass(frozen=True)
class Challenger:
    """A running experiment and the engine of its challenger (model and band edges)."""

    experiment_id: int
    kind: str  # "split" | "shadow"
    share: float
    seed: int
    engine: ScoringEngine

    @property
    def version(self) -> str:
        return self.engine.bundle.version


class ExperimentScoring:
    """The champion's engine with a split and/or a shadow challenger beside it.

    ``bundle``, ``config`` and ``strategy`` are the champion's: the batch is recorded as the
    champion's, its drift measured against the champion's baseline.
    """

    def __init__(self, champion: ScoringEngine, *, split: Challenger | None = None,
                 shadow: Challenger | None = None) -> None:
        if split is None and shadow is None:
            raise ValueError("an experiment scoring needs a split or a shadow challenger")
        self.champion = champion
        self.split = split
        self.shadow = shadow
        self.bundle = champion.bundle
        self.config = champion.config
        self.strategy = champion.strategy
        self.explainer = champion.explainer

    def arms(self, frame: pd.DataFrame) -> np.ndarray:
        """The arm of each row of ``frame`` under the running split."""
        assert self.split is not None
        keys = frame[self.config.id_column].astype(str).tolist()
        return assign_arms(keys, self.split.share, self.split.seed)

    def score(
        self, frame: pd.DataFrame, row_numbers: Sequence[int] | np.ndarray | None = None,
        timings: dict[str, float] | None = None, drift: dict[str, np.ndarray] | None = None,
    ) -> pd.DataFrame:
        n = len(frame)
        rows = np.arange(1, n + 1) if row_numbers is None else np.asarray(row_numbers)
        if n == 0:
            out = self.champion.score(frame, rows, timings=timings, drift=drift)
            return out.assign(**{c: pd.Series(dtype=object) for c in (*ARM_COLUMNS, *self._shadow_cols())})
        if self.split is None:
            out = self.champion.score(frame, rows, timings=timings, drift=drift)
            out["model_version"] = self.bundle.version
            out["arm"] = None
        else:
            arms = self.arms(frame)
            to_challenger = arms == Arm.CHALLENGER
            parts, order = [], []
            for mask, engine, counts in ((~to_challenger, self.champion, drift),
                                         (to_challenger, self.split.engine, None)):
                idx = np.flatnonzero(mask)
                if len(idx) == 0:
                    continue
                part = engine.score(frame.iloc[idx], rows[idx], timings=timings, drift=counts)
                part["model_version"] = engine.bundle.version
                parts.append(part)
                order.append(idx)
            out = pd.concat(parts, ignore_index=True)
            out = out.iloc[np.argsort(np.concatenate(order), kind="stable")].reset_index(drop=True)
            out["arm"] = arms
        if self.shadow is not None:
            # probabilities and bands only: nothing the shadow says is shown or explained
            shadow = self.shadow.engine
            matrix = shadow.features(frame)
            p = shadow.predict(matrix)
            routed = shadow.route(frame, p)
            out["shadow_probability"] = p
            out["shadow_band"] = routed["band"]
            out["shadow_ev_approve"] = routed["ev_approve"]
        return out

    def _shadow_cols(self) -> tuple[str, ...]:
        return SHADOW_COLUMNS if self.shadow is not None else ()

    def details(self, arm_counts: dict[str, int]) -> dict[str, object]:
        """What the batch's ``batch_scored`` entry says about the experiments it ran under."""
        out: dict[str, object] = {}
        if self.split is not None:
            out["split"] = {"experiment_id": self.split.experiment_id, "challenger": self.split.version,
                            "share": self.split.share, "seed": self.split.seed,
                            "low_edge": self.split.engine.strategy.low_edge,
                            "high_edge": self.split.engine.strategy.high_edge,
                            "arms": {str(k): int(v) for k, v in arm_counts.items()}}
        if self.shadow is not None:
            out["shadow"] = {"experiment_id": self.shadow.experiment_id,
                             "challenger": self.shadow.version}
        return {"experiments": out}


__all__ = ["ARM_COLUMNS", "SHADOW_COLUMNS", "Challenger", "ExperimentNeedsLocalRun", "ExperimentScoring"]
