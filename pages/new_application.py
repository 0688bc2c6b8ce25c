"""New application: an officer types one application and gets its decision at once."""

from __future__ import annotations

import streamlit as st

from finflow_app import state
from finflow_core.services.access import Action  # noqa: E402

wb = state.guard(Action.SUBMIT_APPLICATION)

import pandas as pd  # noqa: E402

from finflow_app import fmt as f  # noqa: E402
from finflow_app.fmt import BAND_SHORT, DECISION_NAMES  # noqa: E402
from finflow_core.errors import FinFlowError  # noqa: E402

cfg = wb.context.config
currency = cfg.economics.currency
currency_md = f.md(currency)  # the currency inside Markdown (metrics, tooltips): as written
RESULT_KEY = "na_result"
ID_KEY = "na_result_id"

st.title("New application")
st.write("Type one application: it goes through the same quality gate, model and strategy as a weekly "
         "batch, and is stored and audited.")

columns = list(cfg.input_columns)
with st.form("new_application", enter_to_submit=False):
    record: dict[str, object] = {}
    grid = st.columns(3)
    for i, col in enumerate(columns):
        box = grid[i % 3]
        key = f"na_{col.name}"
        label = f.md(col.display) + ("" if col.nullable else " *")  # a widget label is Markdown
        if col.role == "id":
            record[col.name] = box.text_input(label, key=key, max_chars=col.max_length or 64)
        elif col.type == "date":
            # a date: the service writes it as the column's cells are written
            record[col.name] = box.date_input(label, value=None, key=key, format="YYYY-MM-DD")
        elif col.type == "category":
            record[col.name] = box.selectbox(label, list(col.categories), index=None, key=key,
                                             placeholder="Choose")
        elif col.role == "interest_rate":  # typed as people say it (11.5 %), stored as a fraction
            rate = box.number_input(
                f"{f.md(col.display)} (%)" + ("" if col.nullable else " *"), value=None, key=key,
                min_value=None if col.min is None else float(col.min) * 100,
                max_value=None if col.max is None else float(col.max) * 100, step=0.25, format="%.2f",
                placeholder="optional" if col.nullable else None)
            record[col.name] = None if rate is None else round(rate / 100, 6)
        elif col.is_numeric:
            integer = col.type == "integer"
            conv = int if integer else float
            record[col.name] = box.number_input(
                label, value=None, key=key,
                min_value=None if col.min is None else conv(col.min),
                max_value=None if col.max is None else conv(col.max),
                step=1 if integer else None,
                # small-valued decimals (rates, ratios) keep four places, money two
                format="%d" if integer else "%.4f" if col.max is not None and col.max <= 100 else "%.2f",
                placeholder="optional" if col.nullable else None,
            )
        else:
            record[col.name] = box.text_input(label, key=key, max_chars=col.max_length)
    submitted = st.form_submit_button("Get decision", type="primary")

if submitted:
    try:
        st.session_state[RESULT_KEY] = wb.applications.submit(record)
        st.session_state[ID_KEY] = record.get(cfg.id_column) or ""
    except FinFlowError as exc:
        state.error(exc)
        st.session_state.pop(RESULT_KEY, None)

result = st.session_state.get(RESULT_KEY)
if result is not None:
    st.divider()
    if not result.valid:
        st.error("The application does not pass the quality gate; nothing was stored. Fix these fields:")
        issues = pd.DataFrame(result.issues)
        shown = [c for c in ("column", "value", "message") if c in issues.columns]
        table = issues[shown].copy()
        for col in shown:
            table[col] = f.text_cells(table[col])
        st.dataframe(table, hide_index=True, key="na_issues")
    else:
        decision = result.decision or ""
        earlier = result.earlier
        if earlier is not None:
            decided = (f"{f.md(earlier.outcome)} by {f.md(earlier.decided_by)} on {f.md(f.when(earlier.decided_at))}"
                       if earlier.decided_at else "not decided yet: it waits in the review queue")
            st.info(f"This application was already submitted on {f.md(f.when(earlier.stored_at))} by "
                    f"{f.md(earlier.stored_by)} with the same figures, and nothing new was stored. Its "
                    f"decision: {decided}. Here is that decision:", icon=":material/content_copy:")
        show = {"approve": st.success, "review": st.warning, "decline": st.error}.get(decision, st.info)
        show(f"Decision: **{DECISION_NAMES.get(decision, f.md(decision))}**", icon=":material/gavel:")
        c = st.columns(4)
        c[0].metric("Probability of default", f.probability(result.probability))
        c[1].metric("Risk band", BAND_SHORT.get(result.band or "", f.text(result.band)))
        c[2].metric("Expected profit", f.money(result.expected_profit, currency_md, 2))
        c[3].metric("Time taken", f"{f.count(result.seconds * 1000)} ms")
        if result.reasons:
            st.subheader("Reasons")
            for i, r in enumerate(result.reasons):
                st.text(f"{i + 1}. {f.text(r['text'])}")
        elif decision == "approve":
            st.caption("Approvals carry no adverse reasons.")
        if decision == "review" and earlier is None:
            st.caption("The application is in the review queue.")
        st.caption(f"Stored as application {f.md(st.session_state.get(ID_KEY, ''))} (batch {f.md(result.batch_id)}).")
