"""The review desk's manager view: overrides of the model by officer, and a batch's
decline letters (drawn on the Review queue page for managers)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from finflow_app.fmt import Formatter
from finflow_core.services.access import Action
from finflow_core.services.workbench import Workbench

LEVELS = {"ok": "ok", "watch": "watch (above the watch level)", "alert": "flag: review this officer"}


def show(wb: Workbench, f: Formatter) -> None:
    """The manager's view: overrides by officer, and a batch's decline letters."""
    st.subheader("Overrides of the model")
    report = wb.review.override_rate()
    overall = report.overall
    c = st.columns(3)
    c[0].metric("Override rate (all officers)", f.percent(overall.rate),
                help="Officers' approve / decline decisions against the model's suggestion (approve "
                     "below the cut-off, decline above it), over all their approve / decline "
                     f"decisions. Watch above {f.percent(report.watch, 0)}, flag above "
                     f"{f.percent(report.alert, 0)}.")
    c[1].metric("Officers' decisions", f.count(overall.decisions))
    c[2].metric("Confirmed by a second officer", f.count(overall.four_eyes))
    if report.by_officer:
        st.dataframe(pd.DataFrame([
            {"officer": o.officer, "decisions": o.decisions, "overrides": o.overrides,
             "approved against the model": o.approved_against,
             "declined against the model": o.declined_against, "override rate": f.percent(o.rate),
             "second officer confirmed": o.four_eyes, "level": LEVELS[report.level(o)]}
            for o in report.by_officer
        ]), hide_index=True, key="rq_overrides")
    show_batch_letters(wb, f)


def show_batch_letters(wb: Workbench, f: Formatter) -> None:
    st.subheader("Decline letters by batch")
    if wb.context.config.lender is None:
        st.warning("Decline letters need the lender's details: add a lender: section (name, address, "
                   "contact) to the config.")
        return
    if not wb.can(Action.VIEW_BATCHES):
        return
    batches = wb.batches.list(limit=50)
    if not batches:
        st.caption("No batch stored yet.")
        return
    labels = {b.id: f"{f.text(b.file_name)} · {f.when(b.uploaded_at)}" for b in batches}
    chosen = st.selectbox("Batch", list(labels), format_func=labels.__getitem__, key="rq_letters_batch")
    n = wb.letters.declined_count(chosen)
    if not n:
        st.caption("This batch has no declined application.")
        return
    st.caption(f"{f.count(n)} declined application(s): one notice each, a page per notice. Every "
               "download is recorded in the audit trail.")
    c1, c2 = st.columns(2)
    c1.download_button("Letters (PDF)", data=lambda: wb.letters.batch(chosen, "pdf").data,
                       file_name=f"decline-letters-{chosen}.pdf", mime="application/pdf",
                       key="rq_letters_pdf", icon=":material/download:", on_click="ignore")
    c2.download_button("Letters (HTML)", data=lambda: wb.letters.batch(chosen, "html").data,
                       file_name=f"decline-letters-{chosen}.html", mime="text/html",
                       key="rq_letters_html", icon=":material/download:", on_click="ignore")
