"""Review queue: officers work the cases the model sent to a person; managers may look."""

from __future__ import annotations

import math

import streamlit as st

from finflow_app import state
from finflow_core.services.access import Action  # noqa: E402

wb = state.guard(Action.VIEW_QUEUE)

import pandas as pd  # noqa: E402

from finflow_app import charts  # noqa: E402
from finflow_app.fmt import BAND_NAMES, BAND_SHORT, cell, compact, count, pct, when  # noqa: E402
from finflow_core.errors import Conflict, FinFlowError  # noqa: E402
from finflow_core.lending.terms import Status  # noqa: E402
from finflow_core.services.review import MAX_TEXT, CaseView, InvalidDecision  # noqa: E402

PAGE_SIZE = 25
CASE_KEY = "rq_case"
OUTCOME_LABELS = {"approve": "Approve", "decline": "Decline", "refer": "Refer"}

cfg = wb.context.config
user = wb.actor
officer = wb.can(Action.DECIDE_CASE)
currency = cfg.economics.currency


def open_case(application_id: int) -> None:
    """Show a case; an officer claims it when it is free."""
    if officer:
        wb.review.open(application_id)
    st.session_state[CASE_KEY] = application_id


def back_to_queue(cv: CaseView | None) -> None:
    if cv is not None and officer and cv.claim is not None and cv.claim.claimed_by == user.username:
        wb.review.release(cv.application_id)
    st.session_state.pop(CASE_KEY, None)


@st.cache_data(show_spinner=False, max_entries=256)
def explanation(url: str, version: str, application_id: int, _case: CaseView) -> object:
    return wb.review.explain(_case)


def show_queue() -> None:
    st.title("Review queue")
    counts = wb.review.counts()
    c1, c2, c3 = st.columns([1, 1, 2])
    c1.metric("Pending review", count(counts[Status.PENDING]))
    c2.metric("Referred", count(counts[Status.REFERRED]))
    if not officer:
        c3.info("Read-only: only credit officers claim and decide cases.")
    left, right = st.columns(2)
    status = left.radio(
        "Cases", [Status.PENDING, Status.REFERRED], horizontal=True, key="rq_status",
        format_func=lambda s: f"{s.capitalize()} ({counts[s]:,})",
    )
    order = right.radio("Order", ["oldest", "amount"], horizontal=True, key="rq_order",
                        format_func=lambda o: "Oldest first" if o == "oldest" else "Largest amount first")
    if officer and st.button("Work the next case", type="primary", key="rq_next",
                             icon=":material/play_arrow:"):
        nxt = wb.review.next_case(order)
        if nxt is None:
            st.info("No pending case is free: the queue is empty or every case is being reviewed.")
        else:
            open_case(nxt)
            st.rerun()
    total_pages = max(1, math.ceil(counts[status] / PAGE_SIZE))
    page_no = 1
    if total_pages > 1:
        page_no = int(st.number_input(f"Page (of {total_pages:,})", min_value=1, max_value=total_pages,
                                      value=1, step=1, key="rq_page"))
    page = wb.review.queue(status, order, limit=PAGE_SIZE, offset=(page_no - 1) * PAGE_SIZE)
    rows, total = page.rows, page.total
    if not rows:
        st.success(f"No {status} cases: the queue is empty.")
        return
    seg_names = list(cfg.segments)
    table = pd.DataFrame([
        {
            "case": r.id, "application": r.external_id, "amount": r.amount,
            "probability of default": r.probability, "band": BAND_NAMES.get(r.band, r.band),
            "week of": r.week_start,
            **{seg_names[i]: getattr(r, f"segment_{i + 1}") for i in range(min(2, len(seg_names)))},
            "being reviewed by": r.claimed_by or "",
        }
        for r in rows
    ])
    st.caption(f"{total:,} {status} case(s); showing {len(rows)} from #{(page_no - 1) * PAGE_SIZE + 1}.")
    st.dataframe(
        table, hide_index=True, key="rq_table",
        column_config={
            "amount": st.column_config.NumberColumn(f"amount ({currency})", format="localized"),
            "probability of default": st.column_config.ProgressColumn(format="percent", min_value=0,
                                                                      max_value=1),
        },
    )
    labels = {r.id: f"{r.external_id} · {compact(r.amount, currency)}"
                    + (f" · with {r.claimed_by}" if r.claimed_by else "") for r in rows}
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    chosen = c1.selectbox("Case", list(labels), format_func=labels.__getitem__, key="rq_choice")
    if c2.button("Open case", key="rq_open", icon=":material/open_in_new:"):
        open_case(int(chosen))
        st.rerun()


def show_case(application_id: int) -> None:
    try:
        cv = wb.review.case(application_id)
    except FinFlowError as exc:
        state.error(exc)
        st.session_state.pop(CASE_KEY, None)
        return
    if st.button("Back to the queue", key="rq_back", icon=":material/arrow_back:"):
        back_to_queue(cv)
        st.rerun()
    st.title(f"Case {cv.external_id}")
    held_by_other = cv.claim is not None and cv.claim.claimed_by != user.username
    if held_by_other:
        assert cv.claim is not None
        st.warning(f"Being reviewed by **{cv.claim.claimed_by}** since {when(cv.claim.claimed_at)} "
                   f"(claim expires {when(cv.claim.expires_at)}). You cannot decide it meanwhile.",
                   icon=":material/lock:")
    if not cv.is_open:
        last = cv.decisions[-1] if cv.decisions else None
        who = "automatically by the model" if last and last.kind == "auto" else f"by {last.decided_by}" if last else ""
        st.info(f"This case is {cv.status}" + (f": {last.outcome} {who} at {when(last.decided_at)}." if last else "."),
                icon=":material/task_alt:")
    elif cv.claim is not None and cv.claim.claimed_by == user.username:
        st.caption(f"You hold this case until {when(cv.claim.expires_at)}.")

    c = st.columns(5)
    c[0].metric("Probability of default", pct(cv.probability))
    c[1].metric("Risk band", BAND_SHORT.get(cv.band, cv.band))
    c[2].metric("Loan amount", compact(cv.amount, currency))
    c[3].metric("Expected profit (review)", compact(cv.expected_profit, currency))
    c[4].metric("Status", cv.status)

    left, right = st.columns([2, 3])
    with left:
        st.subheader("Application")
        data_rows = [{"field": col.display, "value": cell(cv.data.get(col.name)) if col.is_numeric
                      else cv.data.get(col.name, "")} for col in cfg.input_columns]
        st.dataframe(pd.DataFrame(data_rows), hide_index=True, key="rq_case_data", height=560)
    with right:
        st.subheader("Reasons")
        if cv.reasons:
            st.markdown("\n".join(f"{i + 1}. {r['text']}" for i, r in enumerate(cv.reasons)))
        else:
            st.caption("The model gave no adverse reasons for this case.")
        try:
            exp = explanation(cfg.paths.database_url, cv.model_version, cv.application_id, cv)
        except (FinFlowError, ValueError) as exc:
            st.caption(f"No explanation chart: {getattr(exc, 'message', exc)}")
        else:
            name = wb.review.model_name(cv.model_version)
            st.plotly_chart(charts.waterfall(exp.labels, exp.values, exp.contributions, exp.base_value,
                                             model_name=name), key="rq_waterfall")
        st.caption(f"Scored by model {cv.model_version}; uploaded {when(cv.uploaded_at)}; batch {cv.batch_id}.")

    st.subheader("Decision")
    can_decide = officer and cv.is_open and not held_by_other
    if not officer:
        st.caption("Read-only: only credit officers decide cases.")
    reason_codes = [r["text"] for r in cv.reasons]
    with st.form(f"decision_{cv.application_id}", enter_to_submit=False):
        outcome = st.radio("Outcome", list(OUTCOME_LABELS), index=None, horizontal=True,
                           format_func=OUTCOME_LABELS.__getitem__, key=f"dec_outcome_{cv.application_id}",
                           disabled=not can_decide)
        chosen = st.selectbox("Reason code (a decline needs a reason)", reason_codes, index=None,
                              placeholder="Choose a reason code", key=f"dec_code_{cv.application_id}",
                              disabled=not can_decide)
        written = st.text_input("... or write the reason", key=f"dec_reason_{cv.application_id}",
                                disabled=not can_decide, max_chars=MAX_TEXT)
        note = st.text_area("Note (a referral needs one)", key=f"dec_note_{cv.application_id}",
                            disabled=not can_decide, max_chars=MAX_TEXT, height=90)
        submitted = st.form_submit_button("Record decision", type="primary", disabled=not can_decide)
    # the decision the officer saw when the form was drawn: if it changed before the form
    # comes back (a referral meanwhile), the core refuses instead of overriding it unseen
    seen_key = f"dec_seen_{cv.application_id}"
    seen = st.session_state.get(seen_key, cv.current_decision_id)
    st.session_state[seen_key] = cv.current_decision_id
    if submitted and can_decide:
        reason = (written or "").strip() or (chosen or "")
        try:
            rec = wb.review.decide(cv.application_id, outcome or "", reason, note or "", supersedes=seen)
        except (InvalidDecision, Conflict) as exc:
            state.error(exc)
        else:
            state.notify(f"Case {cv.external_id}: {OUTCOME_LABELS[rec.outcome].lower()} recorded.")
            nxt = wb.review.next_case(st.session_state.get("rq_order", "oldest"))
            if nxt is None:
                st.session_state.pop(CASE_KEY, None)
                state.notify("No further pending case is free.", "info")
            else:
                open_case(nxt)
            st.rerun()

    if cv.decisions:
        st.subheader("History")
        st.dataframe(pd.DataFrame([
            {"decision": d.id, "outcome": d.outcome, "kind": d.kind, "by": d.decided_by,
             "at": when(d.decided_at), "reason": d.reason, "note": d.note, "revises": d.supersedes_id}
            for d in cv.decisions
        ]), hide_index=True, key="rq_history")


case = st.session_state.get(CASE_KEY)
if case is None:
    show_queue()
else:
    show_case(int(case))
