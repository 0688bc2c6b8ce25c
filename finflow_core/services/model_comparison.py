"""A candidate against the champion on the same rows with known outcomes, before promotion.

Both models score the same applications and are judged on what those applications did:

* **AUC** (ranking), **calibration error** (the mean gap between predicted and observed
  default rates over ten score bins, weighted by rows) and the **Brier score**;
* **profit on these outcomes** and **automation** when each model decides with its own
  active band edges: approvals earn or lose what the loan actually did, reviews what an
  officer would make of it (the strategy's ``realised_values``), declines nothing.

The rows are a labelled file when one is given, else the rows the candidate was trained on,
scored *out of fold* for the candidate (kept in its bundle as ``evaluation``) and by the
champion as it would score them (its own out-of-fold scores when it was trained on the same
file). Weekly batches carry no outcomes, so none are stored yet; a source of stored outcomes
(by vintage) plugs in as another :class:`Evidence`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from finflow_core.formatting import count, money, number, percent
from finflow_core.lending.config import Config
from finflow_core.lending.model.bundle import ModelBundle, json_safe
from finflow_core.lending.strategy import LoanValues, Strategy, assign_bands, realised_values
from finflow_core.lending.terms import Band

#: Rows kept with a model for later comparisons (the most recent ones when there are more).
EVALUATION_ROWS = 20_000
OOF_COLUMN = "_oof_probability"
#: A candidate trained on less than this share of the champion's rows is flagged.
FEW_ROWS_SHARE = 0.5


class EvidenceKind(StrEnum):
    LABELLED_FILE = "labelled_file"
    RECENT_VINTAGES = "recent_vintages"  # out of time: stored outcomes neither model learned from
    CANDIDATE_OUT_OF_FOLD = "candidate_out_of_fold"


@dataclass(frozen=True)
class Evidence:
    """Rows with outcomes and each model's probabilities for them."""

    kind: EvidenceKind
    description: str
    frame: pd.DataFrame
    outcomes: np.ndarray
    candidate_p: np.ndarray
    champion_p: np.ndarray
    champion_in_sample: bool = False


@dataclass(frozen=True)
class ComparedModel:
    """One model's figures on the comparison rows."""

    version: str
    model: str
    trained_rows: int
    auc: float
    calibration_error: float
    brier: float
    mean_probability: float
    profit: float
    automation_rate: float
    low_edge: float
    high_edge: float
    in_sample: bool = False  # it was trained on these very rows: its figures flatter it


@dataclass(frozen=True)
class ModelComparison:
    """The candidate against the champion: what they were compared on, and every shortfall."""

    candidate: ComparedModel
    champion: ComparedModel
    evidence: EvidenceKind
    source: str  # in words: which rows, and how many
    rows: int
    observed_default_rate: float
    warnings: tuple[str, ...]

    @property
    def candidate_is_worse(self) -> bool:
        return bool(self.warnings)

    def audit_details(self) -> dict[str, object]:
        def figures(m: ComparedModel) -> dict[str, object]:
            return {"version": m.version, "auc": round(m.auc, 4), "calibration_error": round(m.calibration_error, 4),
                    "brier": round(m.brier, 5), "profit": round(m.profit, 2),
                    "automation_rate": round(m.automation_rate, 4), "trained_rows": m.trained_rows}
        # an AUC of rows with one outcome only is NaN: null in the trail's strict JSON
        return json_safe({"evidence": str(self.evidence), "rows": self.rows, "source": self.source,
                          "candidate": figures(self.candidate), "champion": figures(self.champion),
                          "warnings": list(self.warnings)})


def evaluation_frame(valid: pd.DataFrame, oof: np.ndarray, config: Config) -> pd.DataFrame:
    """What a new version keeps for comparisons: its validated training rows (the most recent
    :data:`EVALUATION_ROWS`) with their out-of-fold probability."""
    frame = valid.copy()
    frame[OOF_COLUMN] = np.asarray(oof, dtype=float)
    date = config.role_column("date")
    if len(frame) > EVALUATION_ROWS:
        order = frame[date].sort_values(kind="stable").index if date in frame else frame.index
        frame = frame.loc[order[-EVALUATION_ROWS:]]
    return frame.reset_index(drop=True)


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Row-weighted mean |observed - predicted default rate| over equal-count score bins."""
    if len(p) == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    gaps = [abs(float(y[part].mean()) - float(p[part].mean())) * len(part)
            for part in np.array_split(order, min(bins, len(p))) if len(part)]
    return float(sum(gaps) / len(p))


def judge(bundle: ModelBundle, strategy: Strategy, p: np.ndarray, y: np.ndarray, values: LoanValues,
          config: Config, *, in_sample: bool = False) -> ComparedModel:
    from sklearn.metrics import brier_score_loss, roc_auc_score

    bands = assign_bands(p, strategy.low_edge, strategy.high_edge)
    approve, review = realised_values(y, values, config.economics)
    low, medium = bands == Band.LOW, bands == Band.MEDIUM
    profit = float(approve[low].sum() + review[medium].sum())
    auc = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
    return ComparedModel(
        version=bundle.version, model=bundle.model_name, trained_rows=int(bundle.card.get("rows", 0)),
        auc=auc, calibration_error=calibration_error(y, p), brier=float(brier_score_loss(y, p)),
        mean_probability=float(p.mean()), profit=profit,
        automation_rate=float(1 - medium.mean()) if len(p) else 0.0,
        low_edge=strategy.low_edge, high_edge=strategy.high_edge, in_sample=in_sample,
    )


def shortfalls(cand: ComparedModel, champ: ComparedModel, currency: str) -> tuple[str, ...]:
    """Every figure on which the candidate is worse than the champion, as shown (rounded)."""
    out = []
    if round(cand.auc, 3) < round(champ.auc, 3):
        out.append(f"lower AUC: {number(cand.auc, 3)} against {number(champ.auc, 3)}")
    if round(cand.calibration_error, 3) > round(champ.calibration_error, 3):
        out.append(f"worse calibrated: predicted default rates miss the observed ones by "
                   f"{number(cand.calibration_error * 100, 1)} pts on average, against "
                   f"{number(champ.calibration_error * 100, 1)} pts")
    # without pricing there is no profit (NaN) to compare: the figures say "not priced"
    if np.isfinite([cand.profit, champ.profit]).all() and round(cand.profit) < round(champ.profit):
        out.append(f"less profit on these outcomes: {money(cand.profit, currency)} against "
                   f"{money(champ.profit, currency)}")
    if round(cand.automation_rate, 3) < round(champ.automation_rate, 3):
        out.append(f"automates less: {percent(cand.automation_rate)} against {percent(champ.automation_rate)}")
    if champ.trained_rows and cand.trained_rows < FEW_ROWS_SHARE * champ.trained_rows:
        out.append(f"trained on far fewer applications: {count(cand.trained_rows)} against "
                   f"{count(champ.trained_rows)}")
    return tuple(out)


def compare(candidate: ModelBundle, candidate_strategy: Strategy, champion: ModelBundle,
            champion_strategy: Strategy, evidence: Evidence, config: Config) -> ModelComparison:
    y = evidence.outcomes.astype(int)
    values = LoanValues.from_frame(evidence.frame, config)
    cand = judge(candidate, candidate_strategy, evidence.candidate_p, y, values, config)
    champ = judge(champion, champion_strategy, evidence.champion_p, y, values, config,
                  in_sample=evidence.champion_in_sample)
    warnings = shortfalls(cand, champ, config.economics.currency)
    return ModelComparison(cand, champ, evidence.kind, evidence.description, len(y), float(y.mean()), warnings)


def out_of_fold_evidence(candidate: ModelBundle, champion: ModelBundle, config: Config) -> Evidence | None:
    """The candidate's own training rows (out of fold for it); None if it kept none."""
    frame = getattr(candidate, "evaluation", None)
    if frame is None or len(frame) == 0:
        return None
    y = frame[config.target_column].to_numpy(dtype=int)
    same_file = candidate.card.get("training_data_sha256") == champion.card.get("training_data_sha256")
    champ_frame = getattr(champion, "evaluation", None)
    if same_file and champ_frame is not None and len(champ_frame) == len(frame):
        champion_p, in_sample = champ_frame[OOF_COLUMN].to_numpy(dtype=float), False
    else:
        champion_p, in_sample = champion.model.predict_proba(frame)[:, 1], same_file
    return Evidence(
        EvidenceKind.CANDIDATE_OUT_OF_FOLD,
        f"the {count(len(frame))} applications model {candidate.version} was trained on (the most recent "
        f"{count(EVALUATION_ROWS)} at most), scored out of fold for the candidate"
        + (" and out of fold for the champion, trained on the same file" if same_file and not in_sample
           else " and as the champion scores new applications"),
        frame, y, frame[OOF_COLUMN].to_numpy(dtype=float), champion_p, in_sample)


def labelled_evidence(frame: pd.DataFrame, name: str, candidate: ModelBundle, champion: ModelBundle,
                      config: Config, kind: EvidenceKind = EvidenceKind.LABELLED_FILE) -> Evidence:
    """Labelled rows (recent applications whose outcomes are known) scored by both."""
    y = frame[config.target_column].to_numpy(dtype=int)
    return Evidence(kind, f"the {count(len(frame))} applications with outcomes in {name}",
                    frame, y, candidate.model.predict_proba(frame)[:, 1],
                    champion.model.predict_proba(frame)[:, 1])
