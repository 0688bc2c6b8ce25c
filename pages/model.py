"""Model & strategy: the champion's card, the band edges with a what-if, training and promotion."""

from __future__ import annotations

import streamlit as st

from finflow_app import state
from finflow_core.services.access import Action  # noqa: E402

wb = state.guard(Action.VIEW_MODELS)

import pandas as pd  # noqa: E402

from finflow_app import charts  # noqa: E402
from finflow_app.fmt import compact, money, pct, when  # noqa: E402
from finflow_core.errors import FinFlowError  # noqa: E402
from finflow_core.lending.terms import ModelStatus  # noqa: E402
from finflow_core.services.models import TrainingOutcome  # noqa: E402

cfg = wb.context.config
currency = cfg.economics.currency
target = cfg.strategy.automation_target


def label(name: str) -> str:
    try:
        return cfg.feature_display(name)
    except KeyError:
        return name


def training_section() -> None:
    st.subheader("Train a new version")
    st.caption("Upload a labelled history (the batch columns plus the outcome column "
               f"`{cfg.target_column}`). Every candidate model is cross-validated; the best is registered "
               "as a candidate that a manager can promote.")
    file = st.file_uploader("Labelled history (CSV)", type=["csv"], key="md_train_file")
    if file is None or not st.button("Train and register", key="md_train", icon=":material/model_training:"):
        outcome = st.session_state.get("md_outcome")
        if outcome is not None:
            show_outcome(outcome)
        return
    with st.spinner("Training: cross-validating every candidate model..."):
        try:
            outcome = wb.models.train(file.getvalue(), name=file.name)
        except FinFlowError as exc:
            state.error(exc)
            return
    st.session_state["md_outcome"] = outcome
    show_outcome(outcome)


def show_outcome(outcome: TrainingOutcome) -> None:
    card = outcome.card
    status = "champion (the first model)" if outcome.became_champion else "candidate: a manager can promote it"
    st.success(f"Registered model {outcome.version} ({card['model']}) as {status}.")
    st.dataframe(pd.DataFrame([
        {"model": c["name"], "AUC": c["metrics"]["auc"], "Brier": c["metrics"]["brier"],
         f"out-of-fold profit ({currency})": c["oof_profit"], "cut-off": c["cutoff"]}
        for c in outcome.candidates
    ]), hide_index=True, key="md_candidates")
    comp = outcome.champion_comparison
    if comp and "error" not in comp:
        st.markdown(
            f"On this data the champion {comp['champion']} reaches AUC **{comp['champion_auc']:.3f}**"
            + (" (in-sample: it was trained on it)" if comp["champion_saw_this_data"] else "")
            + f"; the new version's out-of-fold AUC is **{comp['challenger_auc_out_of_fold']:.3f}**. "
            f"Observed default rate {pct(comp['observed_default_rate'])}."
        )
    elif comp:
        st.warning(f"No comparison with the champion {comp['champion']}: {comp['error']}")


st.title("Model & strategy")
meta = wb.models.champion()
if meta is None:
    st.info("No model yet.")
    if wb.can(Action.TRAIN_MODEL):
        training_section()
    st.stop()

champion = meta.version
card = wb.models.card(champion)
active = wb.models.active_strategy(champion)
m = card["metrics_out_of_fold"]
versions = wb.models.versions()

st.markdown(f"Champion **{champion}** · {card['model']} · trained on {card['rows']:,} applications "
            f"(default rate {pct(card['default_rate'])}) by {meta.trained_by} · "
            f"promoted {when(meta.promoted_at)}")
st.subheader(f"Cross-validated metrics ({card['cv_folds']}-fold, out of fold)")
c = st.columns(6)
c[0].metric("AUC", f"{m['auc']:.3f}")
c[1].metric("Gini", f"{m['gini']:.3f}")
c[2].metric("KS", f"{m['ks']:.3f}")
c[3].metric("Brier", f"{m['brier']:.4f}")
c[4].metric("Precision", f"{m['precision']:.3f}")
c[5].metric("Recall", f"{m['recall']:.3f}")
rows = [card["champion"], *card.get("challengers", [])]
st.dataframe(pd.DataFrame([
    {"model": r["name"], "chosen": r["name"] == card["model"], "AUC": r["metrics"]["auc"],
     "Brier": r["metrics"]["brier"], f"out-of-fold profit ({currency})": r["oof_profit"],
     "cut-off": r["cutoff"], "fit seconds": r.get("fit_seconds")}
    for r in rows
]), hide_index=True, key="md_models")

s = card["strategy"]
left, right = st.columns(2)
left.plotly_chart(charts.roc_curve(card["roc"]["fpr"], card["roc"]["tpr"], m["auc"]), key="md_roc")
right.plotly_chart(charts.profit_curve(card["profit_curve"], s["cutoff"], active.low_edge, active.high_edge,
                                       currency), key="md_profit")

st.subheader("Decision bands")
st.markdown(
    f"Now: approve automatically below **{active.low_edge:.3f}**, decline automatically from "
    f"**{active.high_edge:.3f}**, a person reviews in between. Profit-optimal cut-off {s['cutoff']:.3f}; "
    f"automation target {pct(target, 0)}."
    + ("" if (active.low_edge, active.high_edge) == (s["low_edge"], s["high_edge"])
       else f" (Edges chosen at training: {s['low_edge']:.3f} and {s['high_edge']:.3f}.)")
)
low, high = st.slider("What if the band edges were...", min_value=0.0, max_value=1.0,
                      value=(round(active.low_edge, 3), round(active.high_edge, 3)), step=0.001,
                      format="%.3f", key="md_edges")
now = wb.models.what_if(active.low_edge, active.high_edge, champion)
then = wb.models.what_if(low, high, champion)
c = st.columns(4)
c[0].metric("Automation rate", pct(then.automation_rate),
            delta=f"{(then.automation_rate - now.automation_rate) * 100:+.1f} pts",
            help=f"Target {pct(target, 0)}")
c[1].metric("Expected profit", compact(then.expected_profit, currency),
            delta=money(then.expected_profit - now.expected_profit, currency))
c[2].metric("ROI", pct(then.roi), delta=f"{(then.roi - now.roi) * 100:+.2f} pts")
c[3].metric("Approve / review / decline",
            f"{then.share_low:.0%} / {then.share_medium:.0%} / {then.share_high:.0%}")
if then.automation_rate < target:
    st.warning(f"These edges automate {pct(then.automation_rate)}: below the {pct(target, 0)} target.")
st.caption("Measured on the model's out-of-fold training scores. Moving the sliders changes nothing: "
           "the edges in use change only when a manager saves them.")
if wb.can(Action.EDIT_STRATEGY):
    with st.form("md_save", enter_to_submit=False):
        note = st.text_input("Why (recorded in the audit trail)", key="md_note")
        save = st.form_submit_button(f"Save edges {low:.3f} / {high:.3f} for {champion}", type="primary")
    if save:
        state.act(lambda: wb.models.save_strategy(low, high, note, champion),
                  f"Saved band edges {low:.3f} / {high:.3f}: new batches use them.")

st.subheader("What drives the model")
importance = card.get("global_importance") or {}
if importance:
    st.plotly_chart(charts.importance_bars(importance, {k: label(k) for k in importance}), key="md_importance")

st.subheader("Versions")
st.dataframe(pd.DataFrame([
    {"version": v.version, "status": v.status, "model": v.model, "AUC": v.auc,
     "cut-off": v.cutoff, f"out-of-fold profit ({currency})": v.oof_profit, "rows": v.rows,
     "trained": when(v.created_at), "by": v.trained_by, "promoted by": v.promoted_by}
    for v in versions
]), hide_index=True, key="md_versions")
if wb.can(Action.PROMOTE_MODEL):
    candidates = [v.version for v in versions if v.status != ModelStatus.CHAMPION]
    if candidates:
        with st.form("md_promote", enter_to_submit=False):
            chosen = st.selectbox("Promote to champion", candidates, key="md_promote_version")
            why = st.text_input("Why (recorded in the audit trail)", key="md_promote_note")
            go = st.form_submit_button("Promote", type="primary")
        if go:
            state.act(lambda: wb.models.promote(chosen, why),
                      f"Model {chosen} is now the champion: new batches are scored with it.")
    else:
        st.caption("No other version to promote.")

if wb.can(Action.TRAIN_MODEL):
    training_section()

with st.expander("Libraries and data fingerprints"):
    st.json({"libraries": card.get("libraries"), "training_data_sha256": card.get("training_data_sha256"),
             "artifact_sha256": card.get("artifact_sha256"), "config_sha256": card.get("config_sha256"),
             "calibration": card.get("calibration")})
