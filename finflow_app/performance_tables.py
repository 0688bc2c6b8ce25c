"""Tables of the Performance page: the services' typed results as display frames.

Display only (words, rounding, the light as a symbol): every figure comes from
``finflow_core.services.performance`` and ``experiments``. A figure that may be missing (no
outcome yet, too few for an AUC) is a text cell (``–``), since a missing number would be
drawn as ``None``; figures always present are numbers with a ``st.column_config`` format.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from finflow_app import fmt as f
from finflow_core.lending.experiments import ArmComparison, ArmFigures
from finflow_core.lending.performance import VintagePerformance
from finflow_core.lending.terms import Light
from finflow_core.services.performance import FairnessReport, OfficerQuality
from finflow_core.store.experiments import ExperimentRecord

LIGHTS = {Light.GREEN: "🟢 green", Light.AMBER: "🟡 amber", Light.RED: "🔴 red", Light.NONE: "⚪ no data"}
LIGHT_LEGEND = (
    "Light (observed defaults against the binomial spread the predicted probability implies): "
    "🟢 green: as predicted (under 95% confident they differ) · 🟡 amber: 95% to 99.9% confident · "
    "🔴 red: beyond 99.9% · ⚪ no data: no outcome yet. Loans observed part-way are compared with "
    "the defaults expected by now (PD × share of the term run)."
)


def interval(bounds: tuple[float, float]) -> str:
    lo, hi = bounds
    return f.MISSING if f.is_missing(lo) or f.is_missing(hi) else f"{f.pct(lo)} to {f.pct(hi)}"


def vintage_table(vintages: list[VintagePerformance]) -> tuple[pd.DataFrame, dict[str, Any]]:
    rows = [{
        "vintage": f.text(v.vintage), "applications": v.applications, "funded": v.funded,
        "with outcome": v.with_outcome, "outcome share": v.outcome_share,
        "expected default rate": f.pct(v.expected_default_rate),
        "expected by now": f.pct(v.expected_to_date),
        "observed default rate": f.pct(v.observed_default_rate),
        "light": LIGHTS[v.light], "AUC": f.number(v.auc, 3), "maturity": f.pct(v.maturity, 0),
    } for v in vintages]
    config = {
        **{c: f.count_column(c) for c in ("applications", "funded", "with outcome")},
        "outcome share": f.percent_column("outcome share"),
        "expected default rate": _text("expected default rate", "Mean PD of the funded loans (whole term)."),
        "expected by now": _text("expected by now", "Mean PD × share of term run, of loans with outcomes."),
        "observed default rate": _text("observed default rate", "Defaults among funded loans with outcomes."),
        "AUC": _text("AUC", "Ranking power on funded loans with outcomes (from 30 with both kinds)."),
        "maturity": _text("maturity", "Mean share of the term the loans with outcomes have run."),
    }
    return pd.DataFrame(rows), config


def experiments_table(records: list[ExperimentRecord]) -> tuple[pd.DataFrame, dict[str, Any]]:
    rows = [{
        "test": r.id, "kind": f.text(r.kind), "challenger": f.text(r.challenger_version),
        "share": r.share, "started": f.when(r.started_at), "by": f.text(r.started_by),
        "reason": f.text(r.reason, limit=120), "stopped": f.when(r.stopped_at) if r.stopped_at else "running",
    } for r in records]
    return pd.DataFrame(rows), {"test": f.count_column("test"),
                                "share": f.percent_column("challenger share", 0)}


def arms_table(comp: ArmComparison) -> tuple[pd.DataFrame, dict[str, Any]]:
    def row(name: str, a: ArmFigures) -> dict[str, Any]:
        return {
            "arm": name, "applications": a.applications, "approved": a.approved,
            "approval rate": f.pct(a.approval_rate), "approval rate 95% interval": interval(a.approval_interval),
            "with outcome": a.with_outcome, "defaults": a.defaults, "default rate": f.pct(a.default_rate),
            "default rate 95% interval": interval(a.default_interval), "AUC": f.number(a.auc, 3),
            "realised profit per loan": f.number(a.realised_profit_per_loan, 0),
        }
    rows = [row("champion", comp.champion), row("challenger", comp.challenger)]
    return pd.DataFrame(rows), {c: f.count_column(c) for c in ("applications", "approved", "with outcome",
                                                                "defaults")}


def fairness_table(report: FairnessReport, segment: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    def status(g: Any) -> str:
        if g.small:
            return f"small group (under {report.min_group}): not judged"
        if g.reference:
            return "reference (most approved)"
        return f"flagged: under {f.pct(report.threshold, 0)}" if g.flagged else "ok"
    rows = [{"group": f.text(g.group), "decided": g.decided, "approved": g.approved,
             "approval rate": g.approval_rate, "impact ratio": f.number(g.impact_ratio, 2), "status": status(g)}
            for g in report.groups if g.column == segment]
    return pd.DataFrame(rows), {
        "decided": f.count_column("decided"), "approved": f.count_column("approved"),
        "approval rate": f.percent_column("approval rate"),
        "impact ratio": _text("adverse impact ratio", "Approval rate over the reference group's."),
    }


def fairness_trend_table(trend: list[Any], segment: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per week, one column per group: its impact ratio (text, "–" when not judged)."""
    rows = []
    for period in trend:
        row: dict[str, Any] = {"week of": f.text(period.period)}
        for g in period.report.groups:
            if g.column == segment:
                shown = f.number(g.impact_ratio, 2) if not g.small else "small group"
                row[f.text(g.group)] = shown + (" (flagged)" if g.flagged else "")
        rows.append(row)
    frame = pd.DataFrame(rows).fillna("–")
    return frame, {}


def quality_table(rows: list[OfficerQuality]) -> tuple[pd.DataFrame, dict[str, Any]]:
    frame = pd.DataFrame([{
        "officer": f.text(q.officer), "decisions": q.decisions, "approvals": q.approvals,
        "approval rate": q.approval_rate, "overrides": q.overrides, "override rate": q.override_rate,
        "approvals with outcome": q.approved_with_outcome,
        "default rate of approvals": f.pct(q.approved_default_rate),
        "overrides repaid": q.overrides_right, "overrides defaulted": q.overrides_wrong,
    } for q in rows])
    counts = ("decisions", "approvals", "overrides", "approvals with outcome", "overrides repaid",
              "overrides defaulted")
    return frame, {**{c: f.count_column(c) for c in counts},
                   "approval rate": f.percent_column("approval rate"),
                   "override rate": f.percent_column("override rate", 1)}


def _text(label: str, help_text: str) -> Any:
    import streamlit as st

    return st.column_config.TextColumn(label, help=help_text)
