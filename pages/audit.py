"""Audit trail: search it, check it has not been altered, export it."""

from __future__ import annotations

import streamlit as st

from finflow_app import state
from finflow_core.services.access import Action  # noqa: E402

wb = state.guard(Action.VIEW_AUDIT)

from datetime import UTC, datetime, time, timedelta  # noqa: E402

import pandas as pd  # noqa: E402

from finflow_app import fmt as f  # noqa: E402
from finflow_core.services.audit import AuditFilter  # noqa: E402
from finflow_core.services.audit_wording import action_words, details_words, stored_record  # noqa: E402

VERIFY_KEY = "au_verified"
currency = wb.context.config.economics.currency
READING = ("Details are in words; *record as stored* is each entry exactly as recorded (the export adds "
           "its hashes).")


def worded(action: str, details: dict[str, object] | str) -> dict[str, str]:
    """The action and details in words, and the record exactly as stored."""
    return {"action": action_words(action),
            "details": details_words(action, details, currency=currency, tz=f.time_zone()),
            "record as stored": stored_record(action, details)}


def headed(what: str, message: str) -> str:
    """``what: message``, unless the message names it already ("audit chain intact: ...")."""
    said = message if message.lower().startswith(what.lower()) else f"{what}: {message}"
    return said[:1].upper() + said[1:]


st.title("Audit trail")

st.subheader("Integrity check")
st.caption("Walks the whole hash chain and recomputes every stored decision against it.")
if st.button("Verify the audit trail", key="au_verify", icon=":material/verified_user:"):
    with st.spinner("Checking..."):
        report = wb.audit.verify()
    st.session_state[VERIFY_KEY] = (report.chain.ok, report.chain.message, report.decisions.ok,
                                    report.decisions.message, datetime.now(UTC).isoformat())
verified = st.session_state.get(VERIFY_KEY)
if verified is not None:
    chain_ok, chain_msg, dec_ok, dec_msg, at = verified
    (st.success if chain_ok else st.error)(f.md(headed("Audit chain", chain_msg)), icon=":material/link:")
    (st.success if dec_ok else st.error)(f.md(headed("Decisions", dec_msg)), icon=":material/gavel:")
    st.caption(f"Checked {f.md(f.when(at))}.")

st.subheader("Search")
c = st.columns([2, 2, 1, 1, 1])
application = c[0].text_input("Application id", key="au_application",
                              help="An application's full trail: scoring, decisions, claims.").strip()
actor = c[1].text_input("User", key="au_actor").strip().lower()
since = c[2].date_input("From", value=None, key="au_since", format="YYYY-MM-DD")
until = c[3].date_input("To (inclusive)", value=None, key="au_until", format="YYYY-MM-DD")
limit = c[4].selectbox("Show", [100, 500, 2000], key="au_limit")
since_at = datetime.combine(since, time(), UTC) if since else None
until_at = datetime.combine(until, time(), UTC) + timedelta(days=1) if until else None

if application:
    events = wb.audit.application_trail(application)
    if not events:
        st.info(f"Nothing recorded about application {f.md(application)}.")
    else:
        st.caption(f"{f.count(len(events))} event(s) about application {f.md(application)}, oldest first. "
                   f"{READING}")
        st.dataframe(pd.DataFrame([
            {"at": f.when(e.at), "source": f.text(e.source), "seq": f.text(e.seq), "user": f.text(e.actor),
             "model": f.text(e.model_version), **worded(e.action, e.details)}
            for e in events
        ], columns=["at", "source", "seq", "user", "action", "model", "details", "record as stored"]),
            hide_index=True, key="au_app_table")
        st.download_button("Download this application's trail (CSV)", key="au_dl_app", on_click="ignore",
                           data=lambda: wb.audit.application_trail_csv(application).encode("utf-8"),
                           file_name=f"audit_{application}.csv", mime="text/csv", icon=":material/download:")
else:
    filt = AuditFilter(actor=actor or None, since=since_at, until=until_at)
    entries = wb.audit.entries(filt, limit=limit, newest_first=True)
    if not entries:
        st.info("No audit entry matches.")
    else:
        st.caption(f"{f.count(len(entries))} newest matching entries. {READING}")
        st.dataframe(pd.DataFrame([
            {"seq": e.seq, "at": f.when(e.at), "user": f.text(e.actor),
             "subject": f.text(f"{e.subject_type} {e.subject_id}"), "model": f.text(e.model_version),
             **worded(e.action, e.details)}
            for e in entries
        ], columns=["seq", "at", "user", "action", "subject", "model", "details", "record as stored"]),
            hide_index=True, key="au_table")
    st.download_button(
        "Export the matching trail (CSV, with hashes)", key="au_dl_all", on_click="ignore",
        data=lambda: wb.audit.export_csv(filt).encode("utf-8"),
        file_name="audit_trail.csv", mime="text/csv", icon=":material/download:",
    )
