"""FinFlow: the Streamlit app. Run with ``streamlit run app.py``.

The navigation is built from the signed-in user's roles; with no users yet the app shows
only the first-run set-up, and signed out only the sign-in form. Each page file checks the
user's role itself (``state.guard``), so a deep link cannot get round this file.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from finflow_app import state
from finflow_app.pages import allowed, landing
from finflow_app.screens import setup_screen, sign_in_screen

# a local icon: Streamlit would fetch a material icon from an outside font host (blocked by the CSP)
st.set_page_config(page_title="FinFlow", page_icon=str(Path(__file__).with_name("finflow_app") / "favicon.png"),
                   layout="wide")

if not state.gate().has_users():
    page = st.navigation([st.Page(setup_screen, title="Set up FinFlow", url_path="setup", default=True)],
                         position="hidden")
else:
    wb = state.current()
    if wb is None:
        page = st.navigation(
            [st.Page(sign_in_screen, title="Sign in", url_path="sign_in", default=True)],
            position="hidden",
        )
    else:
        user = wb.actor
        home = landing(user)
        sections: dict[str, list[st.Page]] = {}
        for spec in allowed(user):
            sections.setdefault(spec.section, []).append(
                st.Page(spec.path, title=spec.title, icon=spec.icon, url_path=spec.url_path,
                        default=spec.url_path == home)
            )
        # The menu is drawn here with page links: the config hides Streamlit's own page list
        # (client.showSidebarNavigation = false, so the legacy pages/ listing never shows).
        page = st.navigation([p for group in sections.values() for p in group], position="hidden")
        with st.sidebar:
            st.markdown("### FinFlow")
            for section, group in sections.items():
                st.caption(section)
                for p in group:
                    st.page_link(p)
            st.divider()
            st.markdown(f"**{user.username}**  \n{', '.join(sorted(user.roles))}")
            if st.button("Sign out", key="sign_out", icon=":material/logout:"):
                state.sign_out()
                st.rerun()

state.show_notices()
started = time.perf_counter()
try:
    page.run()
finally:  # st.stop / st.rerun end a run with an exception: still log it
    state.log_run(page.title, time.perf_counter() - started)
state.warm_up()
