"""My account: who I am and changing my own password."""

from __future__ import annotations

import streamlit as st

from finflow_app import state

wb = state.guard(None)
user = wb.actor

from finflow_app.fmt import when  # noqa: E402
from finflow_core.errors import FinFlowError  # noqa: E402
from finflow_core.security.password_policy import MIN_PASSWORD_LENGTH  # noqa: E402

st.title("My account")
me = wb.account.me()
c = st.columns(3)
c[0].text(f"Signed in as\n{me.username}")  # a user name is data: plain text, never Markdown
c[1].text(f"Roles\n{', '.join(sorted(me.roles))}")
c[2].text(f"Password last changed\n{when(me.password_changed_at)}")

st.subheader("Change my password")
st.caption("Your other signed-in browsers are signed out when you change it; this one stays.")
with st.form("ac_password", enter_to_submit=False, clear_on_submit=True):
    current = st.text_input("Current password", type="password", key="ac_current")
    new = st.text_input("New password", type="password", key="ac_new",
                        help=f"At least {MIN_PASSWORD_LENGTH} characters; a few unrelated words work well.")
    repeat = st.text_input("Repeat the new password", type="password", key="ac_repeat")
    submitted = st.form_submit_button("Change password", type="primary")
if submitted:
    if new != repeat:
        st.error("The two new passwords differ.")
    else:
        try:
            wb.account.change_password(current, new)
        except FinFlowError as exc:
            state.error(exc)
        else:
            state.after_password_change(wb)
            st.success("Your password was changed.")
