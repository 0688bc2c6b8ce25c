"""The Streamlit session: the installation's services, the signed-in user, notices.

UI glue only: every figure, rule and change comes from ``finflow_core``'s services. The
config, the store (a pooled engine) and the service context are cached once per server
process (``st.cache_resource``, shared by every session, never mutated); loaded models are
cached by the core's own model cache. Nothing per user and nothing live is cached.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

import streamlit as st

from finflow_core.errors import AuthError
from finflow_core.lending.config import ENV_CONFIG, ENV_DATABASE_URL, ENV_HOME, Config, load_config
from finflow_core.lending.terms import DriftStatus
from finflow_core.services.access import Action, Principal
from finflow_core.services.context import Context
from finflow_core.services.sessions import Gate
from finflow_core.services.workbench import Workbench
from finflow_core.store import open_store

USER_KEY = "ff_user"
NOTICE_KEY = "ff_notice"


# -- resources --------------------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def _context(config_path: str | None, home: str, database_url: str | None) -> Context:
    from finflow_core.store.config_log import record_config

    cfg = load_config()
    store = open_store(cfg.paths.database_url)
    record_config(store, cfg)  # a changed config file is an audit event
    return Context(cfg, store)


def context() -> Context:
    """The installation's services context (cached per config file, home and database URL)."""
    return _context(os.environ.get(ENV_CONFIG), os.environ.get(ENV_HOME) or os.getcwd(),
                    os.environ.get(ENV_DATABASE_URL))


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
        from finflow_core.services.models import champion_engine

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

def current() -> Workbench | None:
    """The session user's workbench, roles re-read from the store (a disabled user is signed out)."""
    p = st.session_state.get(USER_KEY)
    if p is None:
        return None
    try:
        wb = gate().workbench(p)
    except AuthError as exc:
        st.session_state.pop(USER_KEY, None)
        st.session_state[NOTICE_KEY] = exc.message
        return None
    st.session_state[USER_KEY] = wb.actor
    return wb


def sign_in(wb: Workbench) -> None:
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    st.session_state[USER_KEY] = wb.actor


def sign_out() -> None:
    for key in list(st.session_state.keys()):
        del st.session_state[key]


def guard(action: Action | None = None) -> Workbench:
    """Stop the page unless a signed-in user may perform ``action``; their workbench.

    Runs first in every page file: a deep link to a page URL on a freshly started server
    runs the page without ``app.py``, so the page itself must refuse a signed-out visitor.
    """
    wb = current()
    if wb is None:
        notice = st.session_state.pop(NOTICE_KEY, None)
        if notice:
            st.warning(notice)
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
    from finflow_core.services.monitoring import ADVICE

    psi = f": score PSI {score_psi:.3f}" if score_psi is not None else ""
    show = {DriftStatus.STABLE: st.success, DriftStatus.WATCH: st.warning,
            DriftStatus.ALERT: st.error}.get(DriftStatus(status), st.info)
    show(f"Drift: **{status.upper()}**{psi}{limits}. {ADVICE.get(DriftStatus(status), '')}",
         icon=":material/monitor_heart:")


def error(exc: Any) -> None:
    """Show a FinFlow error's message (never a traceback)."""
    st.error(getattr(exc, "message", None) or str(exc))
