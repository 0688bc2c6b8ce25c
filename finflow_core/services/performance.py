"""How the model really performed: vintages, early delinquency, alerts, decision quality.

Every figure rests on funded loans with outcomes: approved-only data. The report says so,
and names the remedies (reject inference, a small random approval sample) in its notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import pandas as pd

from finflow_core.lending.performance import (
    Limits,
    PerformanceAlert,
    VintagePerformance,
    by_vintage,
    performance_alerts,
    vintage_curves,
)
from finflow_core.lending.terms import DecisionKind, Status
from finflow_core.services.access import Action
from finflow_core.services.workbench import Service
from finflow_core.store import outcomes as rows_of
from finflow_core.store import registry

APPROVED_ONLY = (
    "Outcomes exist only for funded loans: these figures describe approved applications, not "
    "everyone who applied. Declined applicants' outcomes are never observed; reject inference "
    "or a small random approval sample are the standard remedies (docs/LIFECYCLE.md)."
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
        observed = frame[frame["funded"] & frame["months_on_book"].notna()]
        funded_per_vintage = frame[frame["funded"]].groupby("vintage").size()
        curves = vintage_curves(observed.assign(
            funded=observed["vintage"].map(funded_per_vintage),
            defaulted=observed["defaulted"] == 1.0))
        reference = self._reference_auc()
        alerts = performance_alerts(vintages, limits or Limits(), reference_auc=reference)
        return PerformanceReport(key, vintages, curves, alerts, reference)

    def decision_quality(self) -> list[OfficerQuality]:
        """Officers' manual decisions against the model's leaning (approve below the champion's
        cut-off), with how the overrides turned out; the last row is everyone."""
        self.require(Action.VIEW_PERFORMANCE)
        frame = self.frame()
        manual = frame[frame["decided_kind"] == DecisionKind.MANUAL].copy()
        with self.ctx.store.connect() as conn:
            manual["officer"] = rows_of.deciders(conn, manual["application_id"].tolist())
        cutoff = self._cutoff()
        manual["approved"] = manual["status"] == Status.APPROVED
        manual["leaning_approve"] = manual["probability"] < cutoff
        manual["override"] = manual["approved"] != manual["leaning_approve"]
        out = [_quality(name, part) for name, part in manual.groupby("officer", sort=True)]
        out.append(_quality("everyone", manual))
        return out

    def _reference_auc(self) -> float | None:
        with self.ctx.store.connect() as conn:
            champion = registry.champion_version(conn)
            card = registry.card(conn, champion) if champion else None
        return float(card["metrics_out_of_fold"]["auc"]) if card else None

    def _cutoff(self) -> float:
        with self.ctx.store.connect() as conn:
            champion = registry.champion_version(conn)
            card = registry.card(conn, champion) if champion else None
        return float(card["strategy"]["cutoff"]) if card else 0.5


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


__all__ = ["APPROVED_ONLY", "OfficerQuality", "PerformanceReport", "PerformanceService",
           "VintageKey"]
