"""My account: who I am and changing my own password."""

from __future__ import annotations

import streamlit as st

from finflow_app import state

user = state.guard(None)

from finflow_core.errors import FinFlowError  # noqa: E402
from finflow_core.services import auth  # noqa: E402

st.title("My account")
st.markdown(f"Signed in as **{user.username}** with the role(s) **{', '.join(sorted(user.roles))}**.")

st.subheader("Change my password")
with st.form("ac_password", enter_to_submit=False, clear_on_submit=True):
    current = st.text_input("Current password", type="password", key="ac_current")
    new = st.text_input("New password", type="password", key="ac_new",
                        help=f"At least {auth.MIN_PASSWORD_LENGTH} characters; a few unrelated words work well.")
    repeat = st.text_input("Repeat the new password", type="password", key="ac_repeat")
    submitted = st.form_submit_button("Change password", type="primary")
if submitted:
    if new != repeat:
        st.error("The two new passwords differ.")
    else:
        try:
            auth.set_password(state.store(), user, user.username, new, current_password=current)
        except FinFlowError as exc:
            state.error(exc)
        else:
            st.success("Your password was changed.")
