"""How the model really performed: vintages, early delinquency, alerts, decision quality.

Every figure rests on funded loans with outcomes: approved-only data. The report says so,
and names the remedies (reject inference, a small random approval sample) in its notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from finflow_core.errors import InvalidInput, ModelError, NotFound
from finflow_core.lending.fairness import COLUMNS, FOUR_FIFTHS, MIN_GROUP, GroupRate, adverse_impact
from finflow_core.lending.performance import (
    Limits,
    PerformanceAlert,
    VintagePerformance,
    by_vintage,
    performance_alerts,
    truncated_auc,
    vintage_curves,
)
from finflow_core.lending.terms import DecisionKind, Status
from finflow_core.services.access import Action
from finflow_core.services.base import Service
from finflow_core.services.model_comparison import OOF_COLUMN
from finflow_core.services.scoring_engines import load_version
from finflow_core.store import fairness_queries, registry
from finflow_core.store import outcomes as rows_of
from finflow_core.store.lending_tables import applications

APPROVED_ONLY = (
    "Outcomes exist only for funded loans: these figures describe approved applications, not "
    "everyone who applied. Declined applicants' outcomes are never observed; reject inference "
    "or a small random approval sample are the standard remedies (docs/LIFECYCLE.md)."
)


FAIRNESS_NOTE = (
    "A group approved at under four fifths (80%) of the most-approved group's rate is flagged, as "
    "fair-lending reviews do; a flag is a reason to look, not a finding of discrimination."
)


class VintageKey(StrEnum):
    BATCH = "batch"
    MONTH = "month"


@dataclass(frozen=True)
class PerformanceReport:
    by: VintageKey
    vintages: list[VintagePerformance]
    curves: pd.DataFrame  # vintage, months_on_book, funded, dpd30_plus, dpd60_plus, dpd90_plus, defaulted
    alerts: list[PerformanceAlert]
    reference_auc: float | None  # the champion's out-of-fold AUC
    notes: tuple[str, ...] = (APPROVED_ONLY,)

    @property
    def outcomes(self) -> int:
        return sum(v.with_outcome for v in self.vintages)


@dataclass(frozen=True)
class OfficerQuality:
    """An officer's (or everyone's) manual decisions against the model's leaning."""

    officer: str
    decisions: int
    approvals: int
    approval_rate: float
    overrides: int  # against the model's leaning at its cut-off
    override_rate: float
    approved_with_outcome: int
    approved_default_rate: float | None
    overrides_right: int  # approved against the model and repaid
    overrides_wrong: int  # approved against the model and defaulted
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class FairnessReport:
    """Approval rates by group of each protected or segment column and their adverse impact
    ratios."""

    segments: tuple[str, ...]  # the columns reported (protected columns, then ``dataset.segments``)
    groups: list[GroupRate]  # one per (segment, group), segment by segment
    threshold: float = FOUR_FIFTHS
    min_group: int = MIN_GROUP
    notes: tuple[str, ...] = (FAIRNESS_NOTE,)

    @property
    def decided(self) -> int:
        """Decided applications counted (each segment counts every one of them once)."""
        first = [g.decided for g in self.groups if g.column == self.segments[0]] if self.segments else []
        return sum(first)

    @property
    def flagged(self) -> list[GroupRate]:
        return [g for g in self.groups if g.flagged]

    def frame(self) -> pd.DataFrame:
        """The groups as a table: segment, group, decided, approved, approval_rate, impact_ratio,
        reference, flagged, small."""
        cols = ["segment", "group", "decided", "approved", "approval_rate", "impact_ratio", "reference",
                "flagged", "small"]
        return pd.DataFrame([(g.column, g.group, g.decided, g.approved, g.approval_rate, g.impact_ratio,
                              g.reference, g.flagged, g.small) for g in self.groups], columns=cols)


#: The rows of :meth:`PerformanceService.decision_quality` that are paths, not officers.
FOUR_EYES_ROW = "four-eyes decisions"
AFTER_REFERRAL_ROW = "decided after a referral"


@dataclass(frozen=True)
class FairnessPeriod:
    """One week's or batch's approval rates by group."""

    period: str  # the week's Monday (ISO date) or the batch id
    report: FairnessReport


class PerformanceService(Service):
    """Analysts and managers see how decisions turned out."""

    def frame(self, batch_ids: tuple[str, ...] = ()) -> pd.DataFrame:
        """One row per stored application with score, decision state and outcome."""
        self.require(Action.VIEW_PERFORMANCE)
        with self.ctx.store.connect(snapshot=True) as conn:
            frame = rows_of.performance_rows(conn, batch_ids=batch_ids)
        lgd = self.ctx.config.economics.loss_given_default
        frame["funded"] = frame["status"] == Status.APPROVED
        frame["declined"] = frame["status"] == Status.DECLINED
        frame["expected_profit"] = np.where(frame["funded"], frame["ev_approve"].astype(float), np.nan)
        frame["expected_loss"] = frame["probability"].astype(float) * lgd * frame["amount"].astype(float)
        frame["month"] = frame["week_start"].str[:7]
        return frame

    def vintages(self, by: VintageKey | str = VintageKey.BATCH, *, limits: Limits | None = None,
                 batch_ids: tuple[str, ...] = ()) -> PerformanceReport:
        """Performance of each vintage (batch or month), early-delinquency curves and alerts."""
        self.require(Action.VIEW_PERFORMANCE)
        key = VintageKey(by)
        frame = self.frame(batch_ids)
        frame["vintage"] = frame["batch_id"] if key is VintageKey.BATCH else frame["month"]
        vintages = by_vintage(frame)
        first_stored = frame.groupby("vintage")["uploaded_at"].min()  # oldest vintage first
        vintages = sorted(vintages, key=lambda v: (str(first_stored.get(v.vintage, "")), v.vintage))
        observed = frame[frame["funded"] & frame["months_on_book"].notna()]
        funded_per_vintage = frame[frame["funded"]].groupby("vintage").size()
        curves = vintage_curves(observed.assign(
            funded=observed["vintage"].map(funded_per_vintage),
            defaulted=observed["defaulted"] == 1.0))
        reference = self._reference_auc()
        by_range = self._reference_by_vintage(frame)
        alerts = performance_alerts(vintages, limits or Limits(),
                                    reference_auc=reference if by_range is None else by_range)
        return PerformanceReport(key, vintages, curves, alerts, reference)

    def decision_quality(self) -> list[OfficerQuality]:
        """Officers' manual decisions against the model's leaning (approve below the champion's
        cut-off), with how the overrides turned out: one row per officer, then the decisions
        confirmed by a second officer (four eyes), those made after a referral, and everyone."""
        self.require(Action.VIEW_PERFORMANCE)
        frame = self.frame()
        manual = frame[frame["decided_kind"] == DecisionKind.MANUAL].copy()
        with self.ctx.store.connect() as conn:
            paths = rows_of.decision_paths(conn, manual["application_id"].tolist())
        manual = manual.assign(**{c: paths[c].to_numpy() for c in paths.columns})
        cutoff = self._cutoff()
        manual["approved"] = manual["status"] == Status.APPROVED
        manual["leaning_approve"] = manual["probability"] < cutoff
        manual["override"] = manual["approved"] != manual["leaning_approve"]
        out = [_quality(name, part) for name, part in manual.groupby("officer", sort=True)]
        out.append(_quality(FOUR_EYES_ROW, manual[manual["four_eyes"].astype(bool)]))
        out.append(_quality(AFTER_REFERRAL_ROW, manual[manual["after_referral"].astype(bool)]))
        out.append(_quality("everyone", manual))
        return out

    def fairness(self, segment: str | None = None) -> FairnessReport:
        """Approval rates and adverse impact ratios by group of ``segment`` (a configured
        protected column or segment column; None: every one, protected columns first), over
        decided applications of published batches."""
        self.require(Action.VIEW_PERFORMANCE)
        names = self._fairness_columns(segment)
        with self.ctx.store.connect(snapshot=True) as conn:
            counts = [fairness_queries.approval_counts(conn, self._group_key(conn, n), n) for n in names]
        return _report(names, counts)

    def fairness_over_time(self, column: str, by: str = "week") -> list[FairnessPeriod]:
        """The same figures for one column, per week (``by="week"``) or per batch, oldest first:
        whether an impact ratio is a trend or one batch's accident."""
        self.require(Action.VIEW_PERFORMANCE)
        if by not in ("week", "batch"):
            raise InvalidInput("by must be 'week' or 'batch'", field="by")
        [name] = self._fairness_columns(column)
        with self.ctx.store.connect(snapshot=True) as conn:
            counts = fairness_queries.approval_counts(conn, self._group_key(conn, name), name, period=by)
        return [FairnessPeriod(str(period), _report((name,), [part.drop(columns="period")]))
                for period, part in counts.groupby("period", sort=True)]

    def _fairness_columns(self, column: str | None) -> tuple[str, ...]:
        config = self.ctx.config
        known = (*config.protected_columns, *config.segments)
        if column is not None and column not in known:
            raise InvalidInput(f"{column!r} is neither a protected column nor a segment; choose from "
                               f"{', '.join(known) or '(none configured)'}", field="segment")
        return known if column is None else (column,)

    def _group_key(self, conn: Any, name: str) -> Any:
        segments = tuple(self.ctx.config.segments)
        if name in segments:
            return applications.c[f"segment_{segments.index(name) + 1}"]
        return fairness_queries.submitted_cell(conn, name)  # a protected column: never a feature

    def _reference_auc(self) -> float | None:
        with self.ctx.store.connect() as conn:
            champion = registry.champion_version(conn)
            card = registry.card(conn, champion) if champion else None
        return float(card["metrics_out_of_fold"]["auc"]) if card else None

    def _reference_by_vintage(self, frame: pd.DataFrame) -> dict[str, float] | None:
        """Each vintage's reference AUC: its model's out-of-fold AUC on the training loans
        scored in the range its funded loans with outcomes were (funded loans are the low
        scores only: the AUC of every applicant is no yardstick for them). None when a
        model kept no out-of-fold rows (then the champion's overall AUC is the reference)."""
        observed = frame[frame["funded"] & frame["defaulted"].notna()]
        out: dict[str, float] = {}
        target = self.ctx.config.target_column
        for vintage, part in observed.groupby("vintage", sort=False):
            version = str(part["model_version"].mode().iat[0])
            try:
                evaluation = load_version(self.ctx, version).evaluation
            except (ModelError, NotFound):
                evaluation = None
            if evaluation is None or OOF_COLUMN not in evaluation:
                return None
            p = part["probability"].to_numpy(dtype=float)
            auc = truncated_auc(evaluation[OOF_COLUMN].to_numpy(dtype=float),
                                pd.to_numeric(evaluation[target]).to_numpy(dtype=float),
                                float(p.min()), float(p.max()))
            if auc is not None:
                out[str(vintage)] = auc
        return out

    def _cutoff(self) -> float:
        with self.ctx.store.connect() as conn:
            champion = registry.champion_version(conn)
            card = registry.card(conn, champion) if champion else None
        return float(card["strategy"]["cutoff"]) if card else 0.5


def _report(names: tuple[str, ...], counts: list[pd.DataFrame]) -> FairnessReport:
    frame = pd.concat(counts, ignore_index=True) if counts else pd.DataFrame(columns=list(COLUMNS))
    groups = adverse_impact(frame) if len(frame) else []
    order = {n: i for i, n in enumerate(names)}
    groups.sort(key=lambda g: order[g.column])
    return FairnessReport(names, groups)


def _quality(name: str, part: pd.DataFrame) -> OfficerQuality:
    n = len(part)
    approved = part[part["approved"]]
    observed = approved[approved["defaulted"].notna()]
    over = observed[observed["override"]]
    notes = () if len(observed) else ("no outcome yet for these approvals",)
    return OfficerQuality(
        officer=str(name), decisions=n, approvals=len(approved),
        approval_rate=len(approved) / n if n else 0.0, overrides=int(part["override"].sum()),
        override_rate=float(part["override"].mean()) if n else 0.0,
        approved_with_outcome=len(observed),
        approved_default_rate=float(observed["defaulted"].mean()) if len(observed) else None,
        overrides_right=int((over["defaulted"] == 0).sum()), overrides_wrong=int((over["defaulted"] == 1).sum()),
        notes=notes,
    )


__all__ = ["APPROVED_ONLY", "FAIRNESS_NOTE", "FairnessReport", "OfficerQuality", "PerformanceReport", "PerformanceService",
           "VintageKey"]
