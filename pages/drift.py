"""Drift: is this week's population still the one the model was trained on?"""

from __future__ import annotations

import streamlit as st

from finflow_app import state
from finflow_core.services.access import Action  # noqa: E402

wb = state.guard(Action.VIEW_DRIFT)

import pandas as pd  # noqa: E402

from finflow_app import charts  # noqa: E402
from finflow_app import fmt as f  # noqa: E402
from finflow_core.errors import FinFlowError  # noqa: E402
from finflow_core.lending.drift import status_words  # noqa: E402
from finflow_core.lending.terms import DriftStatus  # noqa: E402
from finflow_core.services.monitoring import flagged, psi_table  # noqa: E402

cfg = wb.context.config
watch, alert = cfg.monitoring.psi_watch, cfg.monitoring.psi_alert

st.title("Drift")
runs = wb.drift.runs(limit=52)
if not runs:
    st.info("No batch has been scored yet: drift is measured with every weekly batch.")
    st.stop()


def label(name: str) -> str:
    if name == "score":
        return "Score (probability of default)"
    try:
        return cfg.feature_display(name)
    except KeyError:
        return name


names = {i: f"{f.text(r.file_name, limit=80)} · week of {r.week_start} · {status_words(r.status)}"
         for i, r in enumerate(runs)}
meaningful = next((i for i, r in enumerate(runs) if r.status != DriftStatus.INSUFFICIENT), 0)
idx = st.selectbox("Batch", list(names), index=meaningful, format_func=names.__getitem__, key="dr_run",
                   help="Newest first; opens on the newest batch with enough rows to judge.")
run = runs[idx]
score = run.score_psi
state.drift_banner(run.status, score, f" (watch from {watch:g}, alert above {alert:g})")
st.caption(f"Batch {f.md(run.batch_id)} scored {f.md(f.when(run.computed_at))} by model {f.md(run.model_version)}.")

psi = {"score": score, **run.features}
labels = {k: label(k) for k in psi}
st.plotly_chart(charts.psi_bars(psi, labels, watch, alert), key="dr_psi")

st.subheader("Baseline against this batch")
columns = list(run.counts)
column = st.selectbox("Column", columns, format_func=label, key="dr_column")
try:
    dist = wb.drift.distribution(run, column)
except (FinFlowError, KeyError) as exc:
    st.caption(f"No distribution: {f.md(getattr(exc, 'message', exc))}")
else:
    st.plotly_chart(charts.distribution_bars(dist, label(column)), key="dr_dist")

st.subheader("Over time")
table = psi_table(runs)
latest = sorted(run.features.items(), key=lambda t: -(t[1] or 0))[:3]
default_cols = ["score", *[k for k, _ in latest]]
shown = st.multiselect("Columns", list(psi), default=default_cols, format_func=label, key="dr_columns")
if len(runs) > 1 and shown:
    st.plotly_chart(charts.psi_over_time(table, shown, labels, watch, alert), key="dr_time")
st.dataframe(pd.DataFrame([
    {"batch": f.text(r.file_name), "week of": r.week_start, "scored": f.when(r.computed_at),
     "status": status_words(r.status), "score PSI": f.number(r.score_psi, 3),
     "features on watch or alert": len(flagged(r, watch, alert))}
    for r in runs
]), hide_index=True, key="dr_history", column_config={
    "features on watch or alert": f.count_column("features on watch or alert")})
