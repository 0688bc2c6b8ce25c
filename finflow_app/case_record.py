"""A case's record on the review desk: its decline letter and its history (decisions and
the proposals that awaited a second officer), for ``pages/review_queue.py``."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from finflow_app.fmt import Formatter
from finflow_core.services.review import CaseView
from finflow_core.services.workbench import Workbench

KIND_NAMES = {"auto": "automatic", "manual": "officer"}


def letter_downloads(wb: Workbench, cv: CaseView) -> None:
    """The notice of a declined case, generated (and audited) only when downloaded."""
    st.subheader("Decline letter")
    if wb.context.config.lender is None:
        st.caption("Decline letters need the lender's details: add a lender: section to the config.")
        return
    st.caption("The adverse-action notice for this application: the decision, its date and its "
               "principal reasons. Each download is recorded in the audit trail.")
    c1, c2 = st.columns(2)
    c1.download_button("Decline letter (PDF)", data=lambda: wb.letters.case(cv.application_id, "pdf").data,
                       file_name=f"decline-letter-{cv.application_id}.pdf", mime="application/pdf",
                       key=f"rq_letter_pdf_{cv.application_id}", icon=":material/download:",
                       on_click="ignore")
    c2.download_button("Decline letter (HTML)", data=lambda: wb.letters.case(cv.application_id, "html").data,
                       file_name=f"decline-letter-{cv.application_id}.html", mime="text/html",
                       key=f"rq_letter_html_{cv.application_id}", icon=":material/download:",
                       on_click="ignore")


def history(f: Formatter, cv: CaseView) -> None:
    """Every decision of the case (none is ever overwritten) and every closed proposal."""
    if cv.decisions:
        st.subheader("History")
        st.dataframe(pd.DataFrame([
            {"decision": d.id, "outcome": d.outcome, "kind": KIND_NAMES.get(d.kind, d.kind),
             "by": d.decided_by, "proposed by": f.text(d.proposed_by), "at": f.when(d.decided_at),
             "model suggested": f.text(d.suggestion), "reason": f.text(d.reason), "note": f.text(d.note),
             "revises": f"decision {d.supersedes_id}" if d.supersedes_id else "–"}
            for d in cv.decisions
        ]), hide_index=True, key="rq_history")
    closed = [p for p in cv.proposals if not p.is_open]
    if closed:
        st.caption("Decisions that awaited a second officer")
        st.dataframe(pd.DataFrame([
            {"proposed": p.outcome, "by": p.proposed_by, "at": f.when(p.proposed_at), "why": ", ".join(p.needs),
             "ended": p.status, "closed by": f.text(p.closed_by), "closed at": f.when(p.closed_at),
             "note": f.text(p.close_note)}
            for p in closed
        ]), hide_index=True, key="rq_proposals")
