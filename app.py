"""FinFlow: the Streamlit app. Run with ``streamlit run serve.py`` (``make run``).

The navigation is built from the signed-in user's roles; with no users yet the app shows
only the first-run set-up, and signed out only the sign-in form. Signed out, every page URL
is registered too, drawing the sign-in form: a deep link shows the form (never Streamlit's
"Page not found") and, once signed in, the page asked for (when the role allows it). Each
page file checks the user's role itself (``state.guard``), so a deep link cannot get round
this file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from finflow_app import state
from finflow_app.pages import PAGES, PageSpec, allowed, landing
from finflow_app.screens import setup_screen, sign_in_screen

# a local icon: Streamlit would fetch a material icon from an outside font host (blocked by the CSP)
st.set_page_config(page_title="FinFlow", page_icon=str(Path(__file__).with_name("finflow_app") / "favicon.png"),
                   layout="wide")


def _asked_for(spec: PageSpec, screen: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        st.session_state[state.NEXT_KEY] = spec.url_path
        screen()
    run.__name__ = f"asked_for_{spec.url_path}"
    return run


def before_sign_in(screen: Callable[[], None], title: str, url_path: str) -> st.Page:
    """Only ``screen``, under its own URL and under every page's URL."""
    pages = [st.Page(screen, title=title, url_path=url_path, default=True)]
    pages += [st.Page(_asked_for(spec, screen), title=title, url_path=spec.url_path) for spec in PAGES]
    return st.navigation(pages, position="hidden")


def _redirect(home: st.Page, refused: PageSpec | None = None) -> Callable[[], None]:
    """A signed-in user's "/" (or a page URL their roles do not give them) opens their first
    page under its own URL. Every real page keeps its URL (Streamlit serves the default page
    only at "/": a bookmark of the first page would otherwise read "Page not found"), and a
    page the role may not see says so in FinFlow's words, showing nothing of it."""
    def run() -> None:
        if refused is not None:
            state.notify(f"Your role does not give access to {refused.title}: here is your first page.",
                         "info")
        st.switch_page(home)
    run.__name__ = f"redirect_{refused.url_path if refused else 'home'}"
    return run


redirect: list[st.Page] = []  # pages that only send the user on: the notices wait for the next run
if not state.gate().has_users():
    page = before_sign_in(setup_screen, "Set up FinFlow", "setup")
else:
    wb = state.current()
    if wb is None:
        page = before_sign_in(sign_in_screen, "Sign in", "sign_in")
    else:
        user = wb.actor
        home = landing(user)
        sections: dict[str, list[st.Page]] = {}
        for spec in allowed(user):
            sections.setdefault(spec.section, []).append(
                st.Page(spec.path, title=spec.title, icon=spec.icon, url_path=spec.url_path))
        mine = {p.url_path: p for group in sections.values() for p in group}
        redirect = [st.Page(_redirect(mine[home]), title="FinFlow", url_path="home", default=True,
                            visibility="hidden")]
        redirect += [st.Page(_redirect(mine[home], spec), title=spec.title, url_path=spec.url_path,
                             visibility="hidden") for spec in PAGES if spec.url_path not in mine]
        st.session_state.pop(state.NEXT_KEY, None)  # the URL itself brings back the page asked for
        # The menu is drawn here with page links: the config hides Streamlit's own page list
        # (client.showSidebarNavigation = false, so the legacy pages/ listing never shows).
        page = st.navigation([*mine.values(), *redirect], position="hidden")
        with st.sidebar:
            st.markdown("### FinFlow")
            for section, group in sections.items():
                st.caption(section)
                for p in group:
                    st.page_link(p)
            st.divider()
            # the user name as plain text: it is data, never Markdown
            st.text(user.username)
            st.text(("roles: " if len(user.roles) > 1 else "role: ") + ", ".join(sorted(user.roles)))
            if st.button("Sign out", key="sign_out", icon=":material/logout:"):
                state.sign_out()
                st.rerun()

if not any(page is r for r in redirect):
    state.show_notices()
with st.sidebar:
    state.cookie_exchange()
started = time.perf_counter()
try:
    page.run()
finally:  # st.stop / st.rerun end a run with an exception: still log it
    state.log_run(page.title, time.perf_counter() - started)
state.warm_up()
