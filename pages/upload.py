"""Batches: an analyst uploads the week's applications; analysts and managers see stored batches."""

from __future__ import annotations

import streamlit as st

from finflow_app import state
from finflow_core.services.access import Action  # noqa: E402

wb = state.guard(Action.VIEW_BATCHES)

import pandas as pd  # noqa: E402

from finflow_app import charts  # noqa: E402
from finflow_app import fmt as f  # noqa: E402
from finflow_app.fmt import compact, count, pct  # noqa: E402
from finflow_core.errors import BatchRejected, FinFlowError  # noqa: E402
from finflow_core.lending.drift import status_words  # noqa: E402
from finflow_core.pipeline.run import BatchSummary  # noqa: E402
from finflow_core.services.batches import BatchPreview, csv_bytes  # noqa: E402

cfg = wb.context.config
currency = cfg.economics.currency
currency_md = f.md(currency)  # the currency inside Markdown (metrics, tooltips): as written
DONE_KEY = "up_stored"  # sha256 of files this session stored
REPORT_KEY = "up_report"


def show_summary(summary: BatchSummary) -> None:
    target = cfg.strategy.automation_target
    c = st.columns(4)
    c[0].metric("Applications", count(summary.rows_in))
    c[1].metric("Valid", count(summary.rows_valid))
    c[2].metric("Quarantined", count(summary.rows_quarantined))
    gap = f.points_delta(summary.automation_rate - target)
    c[3].metric("Automation rate", pct(summary.automation_rate),
                delta=f"{gap} vs target {pct(target, 0)}" if gap else f"at the target {pct(target, 0)}",
                delta_color="normal" if gap else "off", delta_arrow="auto" if gap else "off")
    c = st.columns(4)
    c[0].metric("Auto-approve", count(summary.bands.get("low", 0)))
    c[1].metric("Manual review", count(summary.bands.get("medium", 0)))
    c[2].metric("Auto-decline", count(summary.bands.get("high", 0)))
    c[3].metric("Expected profit", compact(summary.expected_profit, currency_md),
                delta=f"ROI {pct(summary.roi)}", delta_color="off", delta_arrow="off",
                help=f.money(summary.expected_profit, currency_md))
    drift = summary.drift or {}
    state.drift_banner(str(drift.get("status", "stable")), drift.get("score_psi"))
    st.plotly_chart(charts.bands_bar(summary.bands), key=f"up_bands_{summary.batch_id}")
    for w in summary.warnings:
        st.caption(f"Note: {f.md(w)}")
    st.download_button(
        "Download decisions (CSV)", key=f"up_dl_decisions_{summary.batch_id}", on_click="ignore",
        data=lambda: csv_bytes(wb.batches.decisions(summary.batch_id)),
        file_name=f"decisions_{summary.batch_id}.csv", mime="text/csv", icon=":material/download:",
    )


def quality_gate(report: BatchPreview) -> None:
    st.subheader("Quality gate")
    c = st.columns(3)
    c[0].metric("Rows in file", count(report.rows_in))
    c[1].metric("Valid", count(report.rows_valid))
    c[2].metric("Quarantined", count(report.rows_quarantined))
    for w in report.warnings:
        st.caption(f"Note: {f.md(w)}")
    if report.rows_quarantined:
        st.warning(f"{count(report.rows_quarantined)} row(s) fail the quality gate and will not be scored: "
                   f"{f.md(report.rule_summary())}")
        shown = report.quarantined.head(500).copy()
        for col in shown.columns:  # cells as written, made readable (3,744,600): never None or nan
            if shown[col].dtype == object or str(shown[col].dtype) in ("str", "string"):
                shown[col] = [f.cell(v) for v in shown[col]]
        st.dataframe(shown, hide_index=True, key="up_quarantine")
        d1, d2 = st.columns(2)
        d1.download_button("Download quarantined rows (CSV)", csv_bytes(report.quarantined),
                           file_name="quarantine.csv", mime="text/csv", key="up_dl_quarantine",
                           on_click="ignore", icon=":material/download:")
        d2.download_button("Download issues (CSV)", csv_bytes(report.issues),
                           file_name="quarantine_issues.csv", mime="text/csv", key="up_dl_issues",
                           on_click="ignore", icon=":material/download:")
    else:
        st.success("Every row passed the quality gate.")


def upload_section() -> None:
    st.subheader("Upload this week's applications")
    # No type= filter: Streamlit would refuse a wrong file in the browser with its own error,
    # hidden in the file's tooltip, and the page would never know. The file reaches the
    # quality gate instead, which reads the content and says in FinFlow's words what it is
    # ("an Excel workbook ... Export the sheet as 'CSV UTF-8'") and stores nothing.
    file = st.file_uploader("Weekly batch (CSV, one application per row)", key="up_file")
    if file is None:
        st.caption("Columns expected: " + ", ".join(f.md(c.name) for c in cfg.input_columns))
        # the browser refuses a larger file itself (marked red above, its reason only in a
        # tooltip) and this page never sees it: say so where the analyst looks
        st.caption(f"Up to {cfg.limits.max_file_mb:g} MB per file: a larger file is marked red in the "
                   "box above and never reaches FinFlow; split it into smaller batches.")
        return
    cached = st.session_state.get(REPORT_KEY)
    data = file.getvalue()
    if cached is not None and cached[0] == (file.name, len(data), file.file_id):
        report: BatchPreview = cached[1]
    else:
        try:
            report = wb.batches.preview(data, name=file.name)
        except BatchRejected as exc:
            st.error(f"File rejected, nothing was stored: {f.md(exc.message)}", icon=":material/block:")
            return
        st.session_state[REPORT_KEY] = ((file.name, len(data), file.file_id), report)
    batch = report.batch
    stored = set(st.session_state.get(DONE_KEY, ()))
    if report.stored is not None:
        if batch.sha256 in stored:
            st.success(f"Stored as batch {report.stored.batch_id}.")
        else:
            st.info(f"This file was uploaded before (batch {report.stored.batch_id}): nothing new was "
                    "stored. Its stored results:", icon=":material/content_copy:")
        show_summary(report.stored)
        return
    quality_gate(report)
    if report.rows_valid == 0:
        st.error("No valid application to score: fix the file and upload it again.")
        return
    if not st.button(f"Score and store {count(report.rows_valid)} applications", type="primary", key="up_score",
                     icon=":material/play_arrow:"):
        return
    bar = st.progress(0.0, text="Scoring...")

    def progress(done: int, total: int) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"Scored {count(done)} of ~{count(total)} rows")

    try:
        summary = wb.batches.commit(report, progress=progress)
    except FinFlowError as exc:
        bar.empty()
        state.error(exc)
        return
    bar.progress(1.0, text="Done")
    st.session_state[DONE_KEY] = [*stored, batch.sha256]
    st.session_state.pop(REPORT_KEY, None)
    st.success(f"Stored as batch {summary.batch_id}.")
    show_summary(summary)


def recent_batches() -> None:
    st.subheader("Recent batches")
    rows = wb.batches.list(limit=30)
    if not rows:
        st.caption("No batch stored yet.")
        return
    table = pd.DataFrame([
        {"batch": r.id, "file": f.text(r.file_name), "week of": r.week_start,
         "uploaded": f.when(r.uploaded_at), "by": f.text(r.uploaded_by), "rows": r.rows_in,
         "quarantined": r.rows_quarantined, "approve": r.n_low, "review": r.n_medium,
         "decline": r.n_high, "automation": r.automation_rate,
         "expected profit": round(r.expected_profit), "drift": status_words(r.drift_status),
         "model": f.text(r.model_version)}
        for r in rows
    ])
    config = {
        **{c: f.count_column(c) for c in ("rows", "quarantined", "approve", "review", "decline")},
        "automation": f.percent_column("automation"),
        "expected profit": f.money_column("expected profit", currency),
    }
    st.dataframe(f.rounded(table, config), hide_index=True, key="up_batches", column_config=config)
    names = {r.id: f"{f.text(r.file_name, limit=80)} · {r.id}" for r in rows}
    bid = st.selectbox("Batch", list(names), format_func=names.__getitem__, key="up_pick")
    c = st.columns(3)
    c[0].download_button(
        "Decisions (CSV)", key="up_dl_b_decisions", on_click="ignore", mime="text/csv",
        data=lambda: csv_bytes(wb.batches.decisions(bid)),
        file_name=f"decisions_{bid}.csv", icon=":material/download:",
    )
    c[1].download_button(
        "Quarantined rows (CSV)", key="up_dl_b_quarantine", on_click="ignore", mime="text/csv",
        data=lambda: csv_bytes(wb.batches.quarantine(bid)),
        file_name=f"quarantine_{bid}.csv", icon=":material/download:",
    )
    c[2].download_button(
        "Quality issues (CSV)", key="up_dl_b_issues", on_click="ignore", mime="text/csv",
        data=lambda: csv_bytes(wb.batches.issues(bid)),
        file_name=f"quarantine_issues_{bid}.csv", icon=":material/download:",
    )


st.title("Batches")
if wb.can(Action.UPLOAD_BATCH):
    upload_section()
    st.divider()
recent_batches()
