"""Review queue: officers work the cases the model sent to a person; managers may look.

A desk for a day's work: click a row to open its case; overdue cases (waiting longer than
``review.sla_hours`` since their batch was stored) come first; keys A / D / F decide
(approve, decline, refer), N opens the next case and B goes back to the queue (Streamlit
ignores single-key shortcuts while the cursor is in a text field, so typing a note never
decides a case). Decisions above an officer's authority, or far-off overrides, wait for a
second officer. Managers see the override rate and download a batch's decline letters.
"""

from __future__ import annotations

import math

import streamlit as st

from finflow_app import state
from finflow_core.services.access import Action  # noqa: E402

wb = state.guard(Action.VIEW_QUEUE)

import pandas as pd  # noqa: E402

from finflow_app import case_record, charts, review_oversight  # noqa: E402
from finflow_app.fmt import BAND_NAMES, BAND_SHORT, Formatter, md  # noqa: E402
from finflow_core.errors import Conflict, FinFlowError  # noqa: E402
from finflow_core.lending.field_text import field_text  # noqa: E402
from finflow_core.lending.terms import Outcome, Status  # noqa: E402
from finflow_core.services.review import (  # noqa: E402
    MAX_TEXT,
    CaseView,
    FourEyesRefused,
    InvalidDecision,
    Proposal,
    QueueRow,
    rules_of,
)

PAGE_SIZE = 25
CASE_KEY = "rq_case"
TABLE_KEY = "rq_table"
AWAITING = "awaiting"
#: What each decision button says and the key that presses it (R is Streamlit's own).
OUTCOMES = {Outcome.APPROVE: ("Approve", "A"), Outcome.DECLINE: ("Decline", "D"),
            Outcome.REFER: ("Refer", "F")}

cfg = wb.context.config
user = wb.actor
officer = wb.can(Action.DECIDE_CASE)
f = Formatter(md(cfg.economics.currency), cfg.display.timezone)  # its money is shown in Markdown
sla = cfg.review.sla_hours


def tile(amount: float) -> str:
    """Money on a metric tile: in full up to a million, compact above (``USD 2.5m``) so it
    never ends in an ellipsis; the full figure is in the tile's help."""
    return f.money(amount) if abs(amount) < 1_000_000 else f.compact(amount)


def duration(hours: float) -> str:
    """``45 min``, ``26 h``, ``3 d 2 h``."""
    if hours < 1:
        return f"{max(0, math.floor(hours * 60))} min"
    if hours < 48:
        return f"{math.floor(hours)} h"
    return f"{math.floor(hours / 24)} d {math.floor(hours % 24)} h"


def sla_text(waiting: float, overdue: bool) -> str:
    return f"overdue {duration(waiting - sla)}" if overdue else f"due in {duration(sla - waiting)}"


def open_case(application_id: int) -> None:
    """Show a case; an officer claims it when it is free."""
    if officer:
        wb.review.open(application_id)
    st.session_state[CASE_KEY] = application_id


def back_to_queue(cv: CaseView | None) -> None:
    if cv is not None and officer and cv.claim is not None and cv.claim.claimed_by == user.username:
        wb.review.release(cv.application_id)
    st.session_state.pop(CASE_KEY, None)


def next_case(cv: CaseView | None) -> None:
    """Open the next case for this officer (or say there is none)."""
    nxt = wb.review.next_case(st.session_state.get("rq_order", "oldest"))
    if cv is not None and nxt != cv.application_id:
        back_to_queue(cv)
    if nxt is None:
        st.session_state.pop(CASE_KEY, None)
        state.notify("No case is free: the queue is empty or every case is being reviewed.", "info")
    else:
        open_case(nxt)


@st.cache_data(show_spinner=False, max_entries=256)
def explanation(url: str, version: str, application_id: int, _case: CaseView) -> object:
    return wb.review.explain(_case)


# -- the queue ------------------------------------------------------------------------------

def show_queue() -> None:
    st.title("Review queue")
    desk = wb.review.desk()
    c = st.columns(5)
    c[0].metric("Pending review", f.count(desk.pending))
    c[1].metric("Referred", f.count(desk.referred))
    c[2].metric("Overdue", f.count(desk.overdue),
                help=f"Open cases waiting longer than the service level ({sla:g} hours since their "
                     "batch was stored). They come first in the queue.")
    c[3].metric("Awaiting a second officer", f.count(desk.awaiting))
    if officer:
        day = wb.review.today()
        c[4].metric("You decided today", f.count(day.decided),
                    help="Your decisions since midnight in the installation's time zone.")
        st.caption(f"Today: {f.count(day.approved)} approved, {f.count(day.declined)} declined, "
                   f"{f.count(day.referred)} referred; {f.count(day.confirmed_for_others)} confirmed "
                   f"for colleagues; {f.count(day.awaiting_second)} of yours await a second officer. "
                   "Keys: N next case; in a case A approve, D decline, F refer, B back.")
    else:
        c[4].info("Read-only: only credit officers claim and decide cases.")
    counts = {Status.PENDING: desk.pending, Status.REFERRED: desk.referred, AWAITING: desk.awaiting}
    names = {Status.PENDING: "Pending", Status.REFERRED: "Referred", AWAITING: "Awaiting a second officer"}
    left, mid, right = st.columns([3, 2, 1], vertical_alignment="bottom")
    status = left.radio("Cases", list(names), horizontal=True, key="rq_status",
                        format_func=lambda s: f"{names[s]} ({f.count(counts[s])})")
    order = mid.radio("Order", ["oldest", "amount"], horizontal=True, key="rq_order",
                      format_func=lambda o: "Oldest first" if o == "oldest" else "Largest amount first")
    overdue_only = right.toggle("Only overdue", key="rq_overdue", disabled=status == AWAITING)
    left, right = st.columns([2, 3], vertical_alignment="bottom")
    if officer and left.button("Work the next case", type="primary", key="rq_next",
                               icon=":material/play_arrow:", shortcut="N"):
        next_case(None)
        st.rerun()
    with right:
        find_box()
    total = counts[status]
    if overdue_only and status != AWAITING:  # this status's overdue cases only
        total = wb.review.queue(status, order, limit=1, overdue_only=True).total
    total_pages = max(1, math.ceil(total / PAGE_SIZE))
    page_no = 1
    if total_pages > 1:
        page_no = int(st.number_input(f"Page (of {total_pages:,})", min_value=1, max_value=total_pages,
                                      value=1, step=1, key="rq_page"))
    offset = (page_no - 1) * PAGE_SIZE
    if status == AWAITING:
        page = wb.review.awaiting(limit=PAGE_SIZE, offset=offset)
    else:
        page = wb.review.queue(status, order, limit=PAGE_SIZE, offset=offset, overdue_only=overdue_only)
    if not page.rows:
        st.success(f"No {names[status].lower()} cases" + (" past the service level." if overdue_only else
                                                            ": the queue is empty."))
    else:
        queue_table(page.rows, page.total, offset)
    if wb.can(Action.VIEW_PORTFOLIO):
        review_oversight.show(wb, f)


def find_box() -> None:
    """Open any application by the id it was submitted with, decided or not: a declined one
    (automatic or an officer's) shows its history and its decline letter."""
    with st.form("rq_find", border=False):
        c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
        wanted = c1.text_input("Find an application by its id", key="rq_find_id", max_chars=200,
                               placeholder="the id it was submitted with")
        go = c2.form_submit_button("Open", icon=":material/search:")
    wanted = (wanted or "").strip()
    if go and wanted:
        found = wb.review.find(wanted)
        if not found:
            st.warning(f"No stored application has the id {md(wanted)}.")
            return
        open_case(found[-1])  # the latest batch it was in
        st.rerun()


def queue_table(rows: list[QueueRow], total: int, offset: int) -> None:
    seg_names = list(cfg.segments)
    table = pd.DataFrame([
        {
            "case": r.id, "application": f.text(r.external_id), "amount": r.amount,
            "probability of default": round(r.probability * 100, 1), "band": BAND_NAMES.get(r.band, r.band),
            "waiting": duration(r.waiting_hours), "service level": sla_text(r.waiting_hours, r.overdue),
            "week of": f.day(r.week_start),
            **{seg_names[i]: f.text(getattr(r, f"segment_{i + 1}")) for i in range(min(2, len(seg_names)))},
            "being reviewed by": r.claimed_by or "",
            "awaiting": "" if r.proposal_id is None else f"{r.proposed_outcome} by {r.proposed_by}",
        }
        for r in rows
    ])
    st.caption(f"{total:,} case(s); showing {len(rows)} from #{offset + 1}. Click a row to open its case.")
    event = st.dataframe(
        # a click on any cell opens the case, as does the row's tick box
        table, hide_index=True, key=TABLE_KEY, on_select="rerun",
        selection_mode=["single-row", "single-cell"],
        column_config={
            "amount": st.column_config.NumberColumn(f"amount ({cfg.economics.currency})", format="localized"),
            "probability of default": st.column_config.ProgressColumn(format="%.1f%%", min_value=0,
                                                                      max_value=100),
        },
    )
    picked = [] if event is None else [*event.selection.rows,
                                       *(cell[0] for cell in event.selection.get("cells", []))]
    if picked:
        st.session_state.pop(TABLE_KEY, None)  # back in the queue, no row is still selected
        open_case(int(table.iloc[picked[0]]["case"]))
        st.rerun()


# -- one case -------------------------------------------------------------------------------

def show_case(application_id: int) -> None:
    try:
        cv = wb.review.case(application_id)
    except FinFlowError as exc:
        state.error(exc)
        st.session_state.pop(CASE_KEY, None)
        return
    nav = st.columns([1.7, 1.3, 4])
    if nav[0].button("Back to the queue", key="rq_back", icon=":material/arrow_back:", shortcut="B"):
        back_to_queue(cv)
        st.rerun()
    if officer and nav[1].button("Next case", key="rq_case_next", icon=":material/skip_next:",
                                 shortcut="N"):
        next_case(cv)
        st.rerun()
    st.title(f"Case {md(cv.external_id)}")
    held_by_other = cv.claim is not None and cv.claim.claimed_by != user.username
    status_notes(cv, held_by_other)

    c = st.columns([1.1, 1.1, 1.4, 1.4, 1])
    c[0].metric("Probability of default", f.probability(cv.probability))
    c[1].metric("Risk band", BAND_SHORT.get(cv.band, cv.band))
    c[2].metric("Loan amount", tile(cv.amount), help=f"{f.money(cv.amount)} asked for.")
    c[3].metric("Expected profit", tile(cv.expected_profit), help=f"{f.money(cv.expected_profit)}.")
    c[4].metric("Model suggests", OUTCOMES[cv.suggestion][0] if cv.suggestion else "–",
                help=None if cv.edges is None else
                f"Approve below the cut-off of {f.probability(cv.edges.cutoff)}, decline at or above "
                f"it; the model approves by itself below {f.probability(cv.edges.low_edge)} and "
                f"declines from {f.probability(cv.edges.high_edge)}.")

    left, right = st.columns([2, 3])
    with left:
        st.subheader("Application")
        data_rows = [{"field": col.display, "value": field_text(cfg, col.name, cv.data.get(col.name))}
                     for col in cfg.input_columns]
        st.dataframe(pd.DataFrame(data_rows), hide_index=True, key="rq_case_data", height=560)
    with right:
        st.subheader("Reasons")
        if cv.reasons:
            st.markdown("\n".join(f"{i + 1}. {md(r['text'])}" for i, r in enumerate(cv.reasons)))
        else:
            st.caption("The model gave no adverse reasons for this case.")
        try:
            exp = explanation(cfg.paths.database_url, cv.model_version, cv.application_id, cv)
        except FinFlowError as exc:
            st.caption(f"No explanation chart: {md(exc.message)}")
        else:
            st.plotly_chart(charts.waterfall(exp), key="rq_waterfall")
            st.caption(charts.WATERFALL_NOTE)
        st.caption(f"Scored by model {md(cv.model_version)}; stored {f.when(cv.uploaded_at)}; batch {cv.batch_id}.")

    decision_form(cv, held_by_other)
    if cv.status == Status.DECLINED:
        case_record.letter_downloads(wb, cv)
    case_record.history(f, cv)


def status_notes(cv: CaseView, held_by_other: bool) -> None:
    if held_by_other:
        assert cv.claim is not None
        st.warning(f"Being reviewed by **{md(cv.claim.claimed_by)}** since {f.when(cv.claim.claimed_at)} "
                   f"(claim expires {f.when(cv.claim.expires_at)}). You cannot decide it meanwhile.",
                   icon=":material/lock:")
    if cv.proposal is None and not cv.is_open:
        last = cv.decisions[-1] if cv.decisions else None
        who = ("automatically by the model" if last and last.kind == "auto"
               else f"by {md(last.decided_by)}" if last else "")
        st.info(f"This case is {cv.status}" + (f": decided {who} at {f.when(last.decided_at)}."
                                                if last else "."), icon=":material/task_alt:")
    elif cv.claim is not None and cv.claim.claimed_by == user.username:
        st.caption(f"You hold this case until {f.when(cv.claim.expires_at)}.")
    if cv.is_open:
        clock = (f"{cv.status.capitalize()}: waiting {duration(cv.waiting_hours)} since its batch was "
                 f"stored; service level {sla:g} h")
        if cv.overdue:
            st.warning(f"{clock}: overdue by {duration(cv.waiting_hours - sla)}.", icon=":material/schedule:")
        else:
            st.caption(f"{clock}: due in {duration(sla - cv.waiting_hours)}.")
    if cv.proposal is not None:
        proposal_panel(cv, cv.proposal)


def proposal_panel(cv: CaseView, p: Proposal) -> None:
    """A decision awaiting a second officer: who proposed what and why, and (for another
    officer) confirm or reject."""
    why = []
    if "authority" in p.needs:
        why.append(f"{f.money(p.amount)} is above {md(p.proposed_by)}'s lending authority "
                   f"({f.money(p.authority_limit)})")
    if "override" in p.needs:
        why.append(f"it goes against the model's suggestion ({p.suggestion}) by more than "
                   f"{f.percent(cfg.review.override_distance)} of PD beyond the band edge")
    st.warning(f"**Awaiting a second officer:** {md(p.proposed_by)} proposed to **{p.outcome}** at "
               f"{f.when(p.proposed_at)} because {'; and '.join(why)}."
               + (f" Reason: {md(p.reason)}." if p.reason else "") + (f" Note: {md(p.note)}." if p.note else ""),
               icon=":material/group:")
    if not officer:
        return
    if p.proposed_by == user.username:
        if st.button("Withdraw my proposal", key=f"rq_withdraw_{p.id}"):
            state.act(lambda: wb.review.reject(p.id), "Proposal withdrawn: the case is open again.")
        return
    with st.form(f"rq_second_{p.id}", enter_to_submit=False):
        note = st.text_input("Note (rejecting needs one)", key=f"rq_second_note_{p.id}", max_chars=MAX_TEXT)
        b = st.columns(2)
        confirm = b[0].form_submit_button(f"Confirm: {p.outcome}", type="primary")
        reject = b[1].form_submit_button("Reject the proposal")
    if confirm or reject:
        try:
            if confirm:
                rec = wb.review.confirm(p.id, note)
                state.notify(f"Case {md(cv.external_id)}: {rec.outcome} confirmed (proposed by "
                             f"{md(p.proposed_by)}).")
            else:
                wb.review.reject(p.id, note)
                state.notify(f"Case {md(cv.external_id)}: proposal rejected; the case is open again.")
        except (FourEyesRefused, InvalidDecision, Conflict) as exc:
            state.error(exc)
        else:
            st.rerun()


def decision_form(cv: CaseView, held_by_other: bool) -> None:
    st.subheader("Decision")
    can_decide = officer and cv.is_open and not held_by_other and cv.proposal is None
    if not officer:
        st.caption("Read-only: only credit officers decide cases.")
    elif can_decide:
        authority_notes(cv)
    codes = [r["text"] for r in cv.reasons]
    with st.form(f"decision_{cv.application_id}", enter_to_submit=False):
        picked = st.pills("Reason codes (a decline needs a reason)", codes, selection_mode="multi",
                          key=f"dec_codes_{cv.application_id}", disabled=not can_decide,
                          format_func=md)
        written = st.text_input("... or write the reason", key=f"dec_reason_{cv.application_id}",
                                disabled=not can_decide, max_chars=MAX_TEXT)
        note = st.text_area("Note (a referral needs one)", key=f"dec_note_{cv.application_id}",
                            disabled=not can_decide, max_chars=MAX_TEXT, height=90)
        buttons = st.columns(3)
        pressed = [o for i, (o, (label, key)) in enumerate(OUTCOMES.items())
                   if buttons[i].form_submit_button(label, key=f"dec_{o}_{cv.application_id}",
                                                    type="primary" if o is Outcome.APPROVE else "secondary",
                                                    disabled=not can_decide, shortcut=key)]
    # the decision the officer saw when the form was drawn: if it changed before the form
    # comes back (a referral meanwhile), the core refuses instead of overriding it unseen
    seen_key = f"dec_seen_{cv.application_id}"
    seen = st.session_state.get(seen_key, cv.current_decision_id)
    st.session_state[seen_key] = cv.current_decision_id
    if pressed and can_decide:
        reason = "; ".join([*(picked or []), *([written.strip()] if (written or "").strip() else [])])
        try:
            rec = wb.review.decide(cv.application_id, pressed[0], reason, note or "", supersedes=seen)
        except (InvalidDecision, Conflict) as exc:
            state.error(exc)
            return
        if isinstance(rec, Proposal):
            state.notify(f"Case {md(cv.external_id)}: {rec.outcome} proposed; it awaits a second officer.",
                         "warning")
        else:
            state.notify(f"Case {md(cv.external_id)}: {OUTCOMES[rec.outcome][0].lower()} recorded.")
        next_case(None)
        st.rerun()


def authority_notes(cv: CaseView) -> None:
    """Before deciding: what would need a second officer."""
    rules = rules_of(cfg)
    limit = wb.review.authority()
    if cv.edges is None:
        return
    notes = []
    for outcome in (Outcome.APPROVE, Outcome.DECLINE):
        needs = rules.second_looks(outcome, cv.amount, limit, cv.edges)
        if needs:
            notes.append(f"{OUTCOMES[outcome][0]} needs a second officer ({' and '.join(needs)})")
    shown = "no limit" if limit is None else f.money(limit)
    st.caption(f"Your lending authority: {shown}." + (f" {'; '.join(notes)}." if notes else ""))


case = st.session_state.get(CASE_KEY)
if case is None:
    show_queue()
else:
    show_case(int(case))
