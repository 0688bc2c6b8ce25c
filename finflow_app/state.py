"""The Streamlit session: the installation's services, the signed-in user, notices.

UI glue only: every figure, rule and change comes from ``finflow_core``'s services. The
config, the store (a pooled engine) and the service context are built once per server
process (``finflow_app.resources``, shared by every session, never mutated); loaded models
are cached by the core's own model cache. Nothing per user and nothing live is cached.

Who is signed in: the session state holds the user and the id of their server-side browser
session, checked at every run (idle timeout, sign-out, a changed password or role end it).
After a reload the session state is new and empty; the browser's HttpOnly cookie (set by
``finflow_app.server`` from a one-time code this module puts in the page right after
sign-in) finds the session again. See ``finflow_core.services.browser_sessions``.
"""

from __future__ import annotations

import html
import logging
import os
import sys
import threading
from typing import Any

import streamlit as st

from finflow_app import fmt, resources
from finflow_core.errors import AuthError
from finflow_core.lending.config import Config
from finflow_core.lending.terms import DriftStatus
from finflow_core.services.access import Action, Principal
from finflow_core.services.browser_sessions import EndReason
from finflow_core.services.context import Context
from finflow_core.services.sessions import Gate
from finflow_core.services.workbench import Workbench

USER_KEY = "ff_user"
SESSION_KEY = "ff_session"
HANDOFF_KEY = "ff_handoff"  # the one-time code, until the browser has its cookie
SIGNED_OUT_KEY = "ff_signed_out"  # signed out in this tab: do not resume from the cookie
CLEAR_COOKIE_KEY = "ff_clear_cookie"
NEXT_KEY = "ff_next"  # the page a signed-out visitor asked for
NOTICE_KEY = "ff_notice"
COOKIE = "finflow_session"  # finflow_app.server.COOKIE (not imported: no Starlette in a page)


# -- resources --------------------------------------------------------------------------------

def context() -> Context:
    """The installation's services context (one per config file, home and database URL)."""
    ctx = resources.context()
    if fmt.time_zone() != ctx.config.display.timezone:
        fmt.set_time_zone(ctx.config.display.timezone)  # one setting for the installation
    return ctx


def config() -> Config:
    return context().config


def gate() -> Gate:
    return Gate(context())


_warmed = threading.Event()


def warm_up() -> None:
    """Once per server process, in the background: import the heavy modules (pandas,
    scikit-learn, SHAP, Plotly) and load the champion's scoring engine, so neither the first
    page after sign-in nor the first case opened pays for them."""
    if _warmed.is_set():
        return
    _warmed.set()
    ctx = context()

    def work() -> None:
        import plotly.graph_objects  # noqa: F401

        import finflow_core.services.batches  # noqa: F401
        import finflow_core.services.monitoring  # noqa: F401
        from finflow_core.services.scoring_engines import champion_engine

        try:
            champion_engine(ctx)
        except Exception:  # a failed warm-up only means a slower first use
            logging.getLogger(__name__).warning("warm-up could not load the champion", exc_info=True)

    threading.Thread(target=work, name="finflow-warm-up", daemon=True).start()


def log_run(page: str, seconds: float) -> None:
    """With FINFLOW_LOG_TIMINGS=1, one line per script run on stderr: how long the page took
    on the server (the browser adds its own rendering on top)."""
    if os.environ.get("FINFLOW_LOG_TIMINGS") == "1":
        print(f"finflow-timing page={page!r} seconds={seconds:.3f}", file=sys.stderr, flush=True)


# -- the signed-in user -----------------------------------------------------------------------

def browser_token() -> str | None:
    """The session cookie the browser sent when this tab connected (None under AppTest)."""
    try:
        value = st.context.cookies.get(COOKIE)
    except Exception:  # no browser request behind this run
        return None
    return value if isinstance(value, str) and value else None


def _forget_user(notice: str | None = None) -> None:
    for key in (USER_KEY, SESSION_KEY, HANDOFF_KEY):
        st.session_state.pop(key, None)
    if notice:
        st.session_state[NOTICE_KEY] = notice


def current() -> Workbench | None:
    """The session user's workbench, checked against the store at every run.

    A browser session (signed in here, or found from the cookie after a reload) must still
    be live; a user put in the session state by the process itself (tests) is re-read from
    the store. Either way a disabled user is signed out and roles are the current ones.
    """
    g = gate()
    sid = st.session_state.get(SESSION_KEY)
    try:
        if sid is not None:
            live = g.sessions.check(sid)
        elif st.session_state.get(USER_KEY) is not None:
            wb = g.workbench(st.session_state[USER_KEY])
            st.session_state[USER_KEY] = wb.actor
            return wb
        else:
            token = None if st.session_state.get(SIGNED_OUT_KEY) else browser_token()
            if not token:
                return None
            live = g.sessions.resume(token)
    except AuthError as exc:
        reason = exc.details.get("reason")
        _forget_user(None if reason == EndReason.UNKNOWN else exc.message)
        return None
    st.session_state[USER_KEY] = live.principal
    st.session_state[SESSION_KEY] = live.session_id
    if not live.handoff_open:
        st.session_state.pop(HANDOFF_KEY, None)
    return Workbench(g.ctx, live.principal)


def sign_in(wb: Workbench) -> None:
    """A fresh start for a user who just proved who they are: a new browser session."""
    asked = st.session_state.get(NEXT_KEY)
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    if asked:
        st.session_state[NEXT_KEY] = asked
    grant = gate().sessions.open(wb.actor)
    st.session_state[USER_KEY] = wb.actor
    st.session_state[SESSION_KEY] = grant.session_id
    st.session_state[HANDOFF_KEY] = grant.handoff_code


def sign_out() -> None:
    sid = st.session_state.get(SESSION_KEY)
    if sid is not None:
        gate().sessions.end(sid)
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    st.session_state[SIGNED_OUT_KEY] = True
    st.session_state[CLEAR_COOKIE_KEY] = True


def after_password_change(wb: Workbench) -> None:
    """Keep this tab signed in after changing one's own password; other sessions end."""
    sid = st.session_state.get(SESSION_KEY)
    if sid is not None:
        gate().sessions.keep_after_password_change(sid, wb.actor)


def cookie_exchange() -> None:
    """Let the browser fetch (or drop) its session cookie: an invisible same-origin image.

    The code in it is FinFlow's own (random, URL-safe), never anything a user typed; it is
    drawn at every run until the browser has used it.
    """
    code = st.session_state.get(HANDOFF_KEY)
    if code:
        src = f"/finflow/session?code={html.escape(code, quote=True)}"
    elif st.session_state.pop(CLEAR_COOKIE_KEY, False):
        src = "/finflow/session/end"
    else:
        return
    st.markdown(f'<img src="{src}" alt="" width="1" height="1">', unsafe_allow_html=True)


def guard(action: Action | None = None) -> Workbench:
    """Stop the page unless a signed-in user may perform ``action``; their workbench.

    Runs first in every page file: a deep link to a page URL on a freshly started server
    runs the page without ``app.py`` (``streamlit run app.py``), so the page itself must
    refuse a signed-out visitor.
    """
    wb = current()
    if wb is None:
        notice = st.session_state.pop(NOTICE_KEY, None)
        if notice:
            st.warning(fmt.md(notice))
        st.info("You are not signed in. [Sign in to FinFlow](./)")
        st.stop()
    if action is not None and not wb.can(action):
        st.warning("Your role does not give access to this page.")
        st.stop()
    return wb


def principal() -> Principal | None:
    return st.session_state.get(USER_KEY)


def notify(message: str, kind: str = "success") -> None:
    """A message to show at the top of the next run (after st.rerun)."""
    st.session_state.setdefault("ff_flash", []).append((kind, message))


def show_notices() -> None:
    for kind, message in st.session_state.pop("ff_flash", []):
        getattr(st, kind)(message)


def act(action: Any, success: str) -> None:
    """Run a core write; show its error, or report success at the top of the next run."""
    from finflow_core.errors import FinFlowError

    try:
        action()
    except FinFlowError as exc:
        error(exc)
    else:
        notify(success)
        st.rerun()


def drift_banner(status: str, score_psi: float | None, limits: str = "") -> None:
    """The drift status as a coloured banner, with what to do about it."""
    from finflow_core.lending.drift import ADVICE, status_words

    psi = f": score PSI {fmt.number(score_psi, 3)}" if score_psi is not None else ""
    show = {DriftStatus.STABLE: st.success, DriftStatus.WATCH: st.warning,
            DriftStatus.ALERT: st.error}.get(DriftStatus(status), st.info)
    show(f"Drift: **{status_words(status).upper()}**{psi}{limits}. {ADVICE.get(DriftStatus(status), '')}",
         icon=":material/monitor_heart:")


def error(exc: Any) -> None:
    """Show a FinFlow error's message (never a traceback), as plain text: messages quote what
    people typed and files held (names, ids), which must never render as Markdown."""
    st.error(fmt.md(getattr(exc, "message", None) or str(exc)))
