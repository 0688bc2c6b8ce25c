"""Scoring: probabilities of default, bands, decisions, expected profit and reasons.

Features are built once per chunk and shared by prediction, explanation and drift.
Only review and decline cases are explained: a declined applicant is owed the principal
reasons, an officer needs them, an approval does not.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from finflow_core.lending.config import Config
from finflow_core.lending.explain import ReasonExplainer, ReasonRows
from finflow_core.lending.model.bundle import ModelBundle
from finflow_core.lending.reason_json import collector_paused
from finflow_core.lending.strategy import (
    BAND_DECISION,
    HIGH,
    LOW,
    MEDIUM,
    LoanValues,
    Strategy,
    assign_bands,
    expected_values,
)

#: Columns of a scored batch, in the order they are held.
DECISION_COLUMNS = (
    "row_number", "application_id", "probability", "band", "decision", "expected_profit",
    "ev_approve", "ev_review", "loan_amount", "reasons", "reasons_json",
)
REASON_SEP = " | "
#: A row without reasons as JSON text.
NO_REASONS_JSON = "[]"


class ScoringEngine:
    """Scores validated applications with one model version and one strategy.

    Build it once per model (the app caches it); it holds no per-batch state, so
    threads may share it.
    """

    def __init__(
        self, bundle: ModelBundle, config: Config, strategy: Strategy | None = None,
        explain: bool = True,
    ) -> None:
        bundle.check_compatible(config)
        self.bundle = bundle
        self.config = config
        self.strategy = strategy or bundle.strategy
        self.explainer = ReasonExplainer(bundle, config) if explain else None

    # -- stages -------------------------------------------------------------------------
    def features(self, frame: pd.DataFrame) -> np.ndarray:
        return self.bundle.model.features_.transform(frame)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*feature names.*")
            raw = self.bundle.model.estimator_.predict_proba(matrix)[:, 1]
        return self.bundle.model.calibrator_.predict(raw)

    def route(self, frame: pd.DataFrame, p: np.ndarray) -> dict[str, np.ndarray]:
        s = self.strategy
        bands = assign_bands(p, s.low_edge, s.high_edge)
        values = LoanValues.from_frame(frame, self.config)
        approve, review = expected_values(p, values, self.config.economics)
        declined = 0.0 if values.priced else np.nan  # unpriced: no profit figure at all, not 0
        profit = np.where(bands == LOW, approve, np.where(bands == MEDIUM, review, declined))
        return {"band": bands, "expected_profit": profit, "ev_approve": approve, "ev_review": review}

    def reasons(self, frame: pd.DataFrame, matrix: np.ndarray, mask: np.ndarray) -> list[list[dict]]:
        return self.reason_rows(frame, matrix, mask).records

    def reason_rows(self, frame: pd.DataFrame, matrix: np.ndarray, mask: np.ndarray) -> ReasonRows:
        """The reasons of the rows in ``mask`` (the others have none), with their JSON text."""
        n = len(frame)
        if self.explainer is None or not mask.any():
            return ReasonRows([[] for _ in range(n)], [NO_REASONS_JSON] * n)
        idx = np.flatnonzero(mask)
        exp = self.explainer.explain_matrix(matrix[idx])
        explained = self.explainer.reason_rows(frame.iloc[idx], exp)
        with collector_paused():  # a list per row: see collector_paused
            out: list[list[dict]] = [[] for _ in range(n)]
            encoded: list[str | None] = [NO_REASONS_JSON] * n
            for i, row, text in zip(idx.tolist(), explained.records, explained.encoded, strict=True):
                out[i] = row
                encoded[i] = text
        return ReasonRows(out, encoded)

    def drift_counts(self, frame: pd.DataFrame, matrix: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
        """Bin counts of the score and every feature for this chunk (they add up across chunks).

        One counting rule for every path: :meth:`DriftBaseline.counts`.
        """
        return self.bundle.baseline.counts(frame, p, matrix, self.bundle.feature_names)

    # -- all at once ----------------------------------------------------------------------
    def score(
        self, frame: pd.DataFrame, row_numbers: Sequence[int] | np.ndarray | None = None,
        timings: dict[str, float] | None = None, drift: dict[str, np.ndarray] | None = None,
    ) -> pd.DataFrame:
        """One row per validated application: the decision table of a batch (or a chunk).

        ``reasons`` holds, for review and decline cases, a list of dicts (feature, text,
        value, contribution), strongest first; approvals carry an empty list.
        ``reasons_json`` holds the same as the JSON text the store keeps (built from pieces
        encoded once, so the writer need not encode 40k rows again; None for a row it must
        encode itself). Pass
        ``drift`` to add this chunk's bin counts to it, ``timings`` to add stage seconds.
        """
        if len(frame) == 0:  # a chunk whose every row was quarantined
            return pd.DataFrame({c: pd.Series(dtype=object) for c in DECISION_COLUMNS})
        clock = _Clock(timings)
        matrix = clock.run("features", self.features, frame)
        p = clock.run("predict", self.predict, matrix)
        routed = self.route(frame, p)
        mask = needs_reasons(routed["band"])
        reasons = clock.run("explain", self.reason_rows, frame, matrix, mask)
        if drift is not None:
            counts = clock.run("drift", self.drift_counts, frame, matrix, p)
            for k, v in counts.items():
                drift[k] = drift[k] + v if k in drift else v
        rows = np.arange(1, len(frame) + 1) if row_numbers is None else np.asarray(row_numbers)
        return pd.DataFrame(
            {
                "row_number": rows,
                "application_id": frame[self.config.id_column].astype(str).to_numpy(),
                "probability": p,
                "band": routed["band"],
                "decision": [BAND_DECISION[b] for b in routed["band"]],
                "expected_profit": routed["expected_profit"],
                "ev_approve": routed["ev_approve"],
                "ev_review": routed["ev_review"],
                "loan_amount": frame[self.config.amount_column].to_numpy(dtype=float),
                "reasons": reasons.records,
                "reasons_json": pd.Series(reasons.encoded, dtype=object),  # not pandas' str dtype
            }
        )


def reason_texts(reasons: list[dict[str, Any]]) -> str:
    return REASON_SEP.join(r["text"] for r in reasons)


def needs_reasons(bands: np.ndarray) -> np.ndarray:
    """Review and decline cases are explained: officers need reasons, declined applicants are owed them."""
    return np.isin(bands, [MEDIUM, HIGH])


class _Clock:
    """Adds the seconds each stage takes to a dict, when one is given."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings

    def run(self, stage: str, fn: Any, *args: Any) -> Any:
        if self.timings is None:
            return fn(*args)
        t = time.perf_counter()
        out = fn(*args)
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - t
        return out
