"""The screens shown before anyone is signed in: first-run set-up and sign-in."""

from __future__ import annotations

import streamlit as st

from finflow_app import fmt, state
from finflow_core.errors import FinFlowError
from finflow_core.formatting import sentence
from finflow_core.security.password_policy import MIN_PASSWORD_LENGTH


def setup_screen() -> None:
    """No users yet: create the first admin with the set-up code from the server console."""
    st.title("Set up FinFlow")
    st.write(
        "FinFlow has no users yet. Enter the one-time set-up code that `finflow setup` printed "
        "on the server console, then choose the first administrator's name and password."
    )
    with st.form("setup", enter_to_submit=False):
        code = st.text_input("Set-up code", placeholder="XXXX-XXXX-XXXX", key="setup_code")
        username = st.text_input("Administrator username", key="setup_username")
        password = st.text_input("Password", type="password", key="setup_password",
                                 help=f"At least {MIN_PASSWORD_LENGTH} characters.")
        repeat = st.text_input("Repeat the password", type="password", key="setup_repeat")
        submitted = st.form_submit_button("Create administrator", type="primary")
    if not submitted:
        return
    if password != repeat:
        st.error("The two passwords differ.")
        return
    try:
        wb = state.gate().complete_setup(code, username, password)
    except FinFlowError as exc:
        state.error(exc)
        return
    state.sign_in(wb)
    state.notify(f"Welcome, {fmt.md(wb.actor.username)}: you are FinFlow's first administrator. "
                 "Add your colleagues on the Users page.")
    st.rerun()


def sign_in_screen() -> None:
    st.title("FinFlow")
    st.caption("Credit-risk decisioning for small-business lending")
    notice = st.session_state.pop(state.NOTICE_KEY, None)
    if notice:
        st.warning(fmt.md(sentence(notice)))  # the core's message, said on its own
    with st.form("sign_in"):
        username = st.text_input("Username", key="signin_username", autocomplete="username")
        password = st.text_input("Password", type="password", key="signin_password",
                                 autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    try:
        wb = state.gate().sign_in(username, password)
    except FinFlowError as exc:
        state.error(exc)
        return
    state.sign_in(wb)
    st.rerun()
