"""Model & strategy: the champion's card, the band edges with a what-if, training and promotion."""

from __future__ import annotations

import streamlit as st

from finflow_app import state
from finflow_core.services.access import Action  # noqa: E402

wb = state.guard(Action.VIEW_MODELS)

import pandas as pd  # noqa: E402

from finflow_app import charts  # noqa: E402
from finflow_app import fmt as f  # noqa: E402
from finflow_core.errors import FinFlowError  # noqa: E402
from finflow_core.lending.terms import ModelStatus  # noqa: E402
from finflow_core.services.model_comparison import ModelComparison  # noqa: E402
from finflow_core.services.models import TrainingOutcome  # noqa: E402

cfg = wb.context.config
currency = cfg.economics.currency
currency_md = f.md(currency)  # the currency inside Markdown (metrics, tooltips): as written
target = cfg.strategy.automation_target
OUTCOME_KEY = "md_outcome"
COMPARED_KEY = "md_compared"  # {(candidate, champion, edges...): ModelComparison}
#: widgets that belong to one champion: forgotten when another one is promoted
CHAMPION_WIDGETS = ("md_edges", "md_note", "md_promote_version", "md_promote_note", "md_promote_anyway")


def label(name: str) -> str:
    try:
        return cfg.feature_display(name)
    except KeyError:
        return name


def comparison_table(comp: ModelComparison) -> pd.DataFrame:
    rows = []
    for name, m in (("candidate", comp.candidate), ("champion", comp.champion)):
        rows.append({"": f"{name} {m.version}", "model": m.model, "AUC": m.auc,
                     "calibration error": m.calibration_error, "Brier": m.brier,
                     "profit on these outcomes": round(m.profit), "automation": m.automation_rate,
                     "trained on": m.trained_rows})
    return pd.DataFrame(rows)


def show_comparison(comp: ModelComparison, key: str) -> None:
    config = {
        "AUC": f.number_column("AUC", 3), "calibration error": f.percent_column("calibration error"),
        "Brier": f.number_column("Brier", 4),
        "profit on these outcomes": f.money_column("profit on these outcomes", currency),
        "automation": f.percent_column("automation"), "trained on": f.count_column("trained on"),
    }
    st.dataframe(f.rounded(comparison_table(comp), config), hide_index=True, key=key, column_config=config)
    st.caption(f"Compared on {f.md(comp.source)}; observed default rate {f.pct(comp.observed_default_rate)}. "
               "Calibration error: how far predicted default rates are from the observed ones (mean over "
               "ten score bins). Profit: what each model's approvals and reviews made on these outcomes, "
               "with its own band edges."
               + (" The champion was trained on these rows: its figures flatter it." if comp.champion.in_sample
                  else ""))
    if comp.warnings:
        st.warning("The candidate is worse than the champion here:\n\n"
                   + "\n".join(f"- {f.md(w)}" for w in comp.warnings), icon=":material/warning:")
    else:
        st.success("The candidate is at least as good as the champion on every figure.",
                   icon=":material/check_circle:")


def training_section() -> None:
    st.subheader("Train a new version")
    st.caption("Upload a labelled history (the batch columns plus the outcome column "
               f"`{f.md(cfg.target_column)}`). Every candidate model is cross-validated; the best is "
               "registered as a candidate that a manager can promote.")
    file = st.file_uploader("Labelled history (CSV)", key="md_train_file")  # any type: FinFlow says what is wrong
    if file is not None and st.button("Train and register", key="md_train", icon=":material/model_training:"):
        with st.spinner("Training: cross-validating every candidate model..."):
            try:
                outcome = wb.models.train(file.getvalue(), name=file.name)
            except FinFlowError as exc:
                state.error(exc)
                return
        st.session_state[OUTCOME_KEY] = outcome
        st.rerun()  # the versions table above shows the new version at once
    outcome = st.session_state.get(OUTCOME_KEY)
    if outcome is not None:
        show_outcome(outcome)


def show_outcome(outcome: TrainingOutcome) -> None:
    card = outcome.card
    status = "champion (the first model)" if outcome.became_champion else "candidate: a manager can promote it"
    st.success(f"Registered model {f.md(outcome.version)} ({f.md(card['model'])}) as {status}.")
    config = {"AUC": f.number_column("AUC", 3), "Brier": f.number_column("Brier", 4),
              "out-of-fold profit": f.money_column("out-of-fold profit", currency),
              "cut-off": f.percent_column("cut-off (probability of default)")}
    st.dataframe(f.rounded(pd.DataFrame([
        {"model": c["name"], "AUC": c["metrics"]["auc"], "Brier": c["metrics"]["brier"],
         "out-of-fold profit": round(c["oof_profit"]) if c["oof_profit"] == c["oof_profit"] else None,
         "cut-off": c["cutoff"]}
        for c in outcome.candidates
    ]), config), hide_index=True, key="md_candidates", column_config=config)
    if outcome.champion_comparison is not None:
        st.markdown(f"**Against the champion {f.md(outcome.champion_comparison.champion.version)}**")
        show_comparison(outcome.champion_comparison, "md_train_compare")
    elif outcome.comparison_error:
        st.warning(f"No comparison with the champion: {f.md(outcome.comparison_error)}")


def compared(candidate: str, champion: str) -> ModelComparison | str:
    """The comparison for the promotion form, made once per pair of versions and edges."""
    edges = (wb.models.active_strategy(candidate), wb.models.active_strategy(champion))
    key = (candidate, champion, *[(s.low_edge, s.high_edge) for s in edges])
    cache: dict = st.session_state.setdefault(COMPARED_KEY, {})
    if key not in cache:
        try:
            cache[key] = wb.models.compare(candidate, against=champion)
        except FinFlowError as exc:
            cache[key] = exc.message
    return cache[key]


def promotion_section(champion: str, versions: list) -> None:  # type: ignore[type-arg]
    candidates = {v.version: v for v in versions if v.status != ModelStatus.CHAMPION}
    st.subheader("Promote a version")
    if not candidates:
        st.caption("No other version to promote.")
        return
    chosen = st.selectbox(
        "Candidate", list(candidates), key="md_promote_version",
        format_func=lambda v: f"{v} · {candidates[v].model} · {f.text(candidates[v].status)} · trained "
                              f"{f.when(candidates[v].created_at)} by {f.text(candidates[v].trained_by)}")
    comp = compared(chosen, champion)
    if isinstance(comp, str):
        st.warning(f"No comparison with the champion: {f.md(comp)}")
    else:
        show_comparison(comp, "md_promote_compare")
    worse = isinstance(comp, str) or comp.candidate_is_worse
    with st.form("md_promote", enter_to_submit=False):
        why = st.text_input("Why promote it (required: recorded in the audit trail with the comparison)",
                            key="md_promote_note")
        anyway = st.checkbox("Promote it although it is worse on the figures above", key="md_promote_anyway") \
            if worse else True
        go = st.form_submit_button(f"Promote {f.md(chosen)} to champion", type="primary")
    if go:
        if not why.strip():
            st.error("Give the reason for promoting this model: it is recorded in the audit trail.")
        elif not anyway:
            st.error("The candidate is worse on the figures shown: tick the box to promote it anyway.")
        else:
            state.act(lambda: wb.models.promote(chosen, why, comparison=None if isinstance(comp, str) else comp),
                      f"Model {f.md(chosen)} is now the champion: new batches are scored with it.")


st.title("Model & strategy")
meta = wb.models.champion()
if meta is None:
    st.info("No model yet.")
    if wb.can(Action.TRAIN_MODEL):
        training_section()
    st.stop()

champion = meta.version
if st.session_state.get("md_for") != champion:  # another champion: its own edges and note
    for key in CHAMPION_WIDGETS:
        st.session_state.pop(key, None)
    st.session_state["md_for"] = champion
card = wb.models.card(champion)
active = wb.models.active_strategy(champion)
m = card["metrics_out_of_fold"]
versions = wb.models.versions()

st.markdown(f"Champion **{f.md(champion)}** · {f.md(card['model'])} · trained on {f.count(card['rows'])} "
            f"applications (default rate {f.pct(card['default_rate'])}) by {f.md(meta.trained_by)} · "
            f"promoted {f.md(f.when(meta.promoted_at))}")
st.subheader(f"Cross-validated metrics ({card['cv_folds']}-fold, out of fold)")
c = st.columns(6)
c[0].metric("AUC", f.number(m["auc"], 3))
c[1].metric("Gini", f.number(m["gini"], 3))
c[2].metric("KS", f.number(m["ks"], 3))
c[3].metric("Brier", f.number(m["brier"], 4))
c[4].metric("Precision", f.pct(m["precision"]))
c[5].metric("Recall", f.pct(m["recall"]))
rows = [card["champion"], *card.get("challengers", [])]
models_config = {
    "AUC": f.number_column("AUC", 3), "Brier": f.number_column("Brier", 4),
    "out-of-fold profit": f.money_column("out-of-fold profit", currency),
    "cut-off": f.percent_column("cut-off (probability of default)"),
}
st.dataframe(f.rounded(pd.DataFrame([
    {"model": r["name"], "chosen": "yes" if r["name"] == card["model"] else "no", "AUC": r["metrics"]["auc"],
     "Brier": r["metrics"]["brier"],
     "out-of-fold profit": round(r["oof_profit"]) if r["oof_profit"] == r["oof_profit"] else None,
     "cut-off": r["cutoff"], "fit seconds": f.number(r.get("fit_seconds"), 1)}
    for r in rows
]), models_config), hide_index=True, key="md_models", column_config=models_config)

s = card["strategy"]
left, right = st.columns(2)
left.plotly_chart(charts.roc_curve(card["roc"]["fpr"], card["roc"]["tpr"], m["auc"]), key="md_roc")
right.plotly_chart(charts.profit_curve(card["profit_curve"], s["cutoff"], active.low_edge, active.high_edge,
                                       currency), key="md_profit")

st.subheader("Decision bands")
st.markdown(
    f"Now: approve automatically below **{f.pct(active.low_edge)}** probability of default, decline "
    f"automatically from **{f.pct(active.high_edge)}**, a person reviews in between. Profit-optimal "
    f"cut-off {f.pct(s['cutoff'])}; automation target {f.pct(target, 0)}."
    + ("" if (active.low_edge, active.high_edge) == (s["low_edge"], s["high_edge"])
       else f" (Edges chosen at training: {f.pct(s['low_edge'])} and {f.pct(s['high_edge'])}.)")
)
# The slider is in percent of probability of default, to a tenth of a point (its step).
shown = (round(active.low_edge * 100, 1), round(active.high_edge * 100, 1))
picked = st.slider("What if the band edges were... (probability of default, %)", min_value=0.0,
                   max_value=100.0, value=shown, step=0.1, format="%.1f%%", key="md_edges")
# Untouched, the rounded slider stands for the exact edges in use (no phantom change).
low, high = ((active.low_edge, active.high_edge) if tuple(picked) == shown
             else (round(picked[0] / 100, 6), round(picked[1] / 100, 6)))
moved = (low, high) != (active.low_edge, active.high_edge)
now = wb.models.what_if(active.low_edge, active.high_edge, champion)
then = now if not moved else wb.models.what_if(low, high, champion)
c = st.columns(4)
c[0].metric("Automation rate", f.pct(then.automation_rate),
            delta=f.points_delta(then.automation_rate - now.automation_rate), help=f"Target {f.pct(target, 0)}")
c[1].metric("Expected profit", f.compact(then.expected_profit, currency_md),
            delta=f.money_delta(then.expected_profit - now.expected_profit, currency_md))
c[2].metric("ROI", f.pct(then.roi), delta=f.points_delta(then.roi - now.roi, 2))
c[3].metric("Approve / review / decline",
            f"{f.pct(then.share_low, 0)} / {f.pct(then.share_medium, 0)} / {f.pct(then.share_high, 0)}")
if then.automation_rate < target:
    st.warning(f"These edges automate {f.pct(then.automation_rate)}: below the {f.pct(target, 0)} target.")
st.caption("Measured on the model's out-of-fold training scores. Moving the sliders changes nothing: "
           "the edges in use change only when a manager saves them.")
if wb.can(Action.EDIT_STRATEGY):
    with st.form("md_save", enter_to_submit=False):
        note = st.text_input("Why (recorded in the audit trail)", key="md_note")
        save = st.form_submit_button(f"Save edges {f.pct(low)} / {f.pct(high)} for {f.md(champion)}",
                                     type="primary", disabled=not moved)
    if not moved:
        st.caption("Move the sliders to try other edges; these are the ones in use.")
    if save:
        state.act(lambda: wb.models.save_strategy(low, high, note, champion),
                  f"Saved band edges {f.pct(low)} / {f.pct(high)} for {f.md(champion)}: new batches use them.")

st.subheader("What drives the model")
importance = card.get("global_importance") or {}
if importance:
    st.plotly_chart(charts.importance_bars(importance, {k: label(k) for k in importance}), key="md_importance")

st.subheader("Versions")
versions_config = {
    "AUC": f.number_column("AUC", 3), "cut-off": f.percent_column("cut-off"),
    "out-of-fold profit": f.money_column("out-of-fold profit", currency), "rows": f.count_column("rows"),
}
st.dataframe(f.rounded(pd.DataFrame([
    {"version": v.version, "status": str(v.status), "model": v.model, "AUC": v.auc, "cut-off": v.cutoff,
     "out-of-fold profit": round(v.oof_profit) if v.oof_profit == v.oof_profit else None, "rows": v.rows,
     "trained": f.when(v.created_at), "by": f.text(v.trained_by), "promoted by": f.text(v.promoted_by)}
    for v in versions
]), versions_config), hide_index=True, key="md_versions", column_config=versions_config)
if wb.can(Action.PROMOTE_MODEL):
    promotion_section(champion, versions)

if wb.can(Action.TRAIN_MODEL):
    training_section()

with st.expander("Libraries and data fingerprints"):
    prints = {"training data SHA-256": card.get("training_data_sha256"),
              "artifact SHA-256": card.get("artifact_sha256"), "config SHA-256": card.get("config_sha256"),
              "calibration": card.get("calibration"),
              **{f"library {k}": v for k, v in (card.get("libraries") or {}).items()}}
    st.dataframe(pd.DataFrame({"what": list(prints), "value": f.text_cells(prints.values())}),
                 hide_index=True, key="md_prints")
