"""Shared resources and the signed-in user of a Streamlit session.

Cached with ``st.cache_resource`` (one per server process, shared by every session, never
mutated): the config, the database Store (a pooled engine, not a session), model bundles
and scoring engines. Nothing per user and nothing live (the review queue) is cached.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

import streamlit as st

from finflow_core.errors import AuthError
from finflow_core.lending.config import ENV_CONFIG, ENV_DATABASE_URL, ENV_HOME, Config, load_config
from finflow_core.services import auth
from finflow_core.services.access import can
from finflow_core.services.auth import Principal
from finflow_core.store import Store, open_store

if TYPE_CHECKING:
    from finflow_core.lending.model.bundle import ModelBundle
    from finflow_core.lending.scoring import ScoringEngine

USER_KEY = "ff_user"
NOTICE_KEY = "ff_notice"


# -- resources --------------------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def _config(config_path: str | None, home: str, database_url: str | None) -> Config:
    return load_config()


def config() -> Config:
    """The installation's config (cached per config file, home and database URL)."""
    return _config(os.environ.get(ENV_CONFIG), os.environ.get(ENV_HOME) or os.getcwd(),
                   os.environ.get(ENV_DATABASE_URL))


@st.cache_resource(show_spinner=False)
def _store(url: str) -> Store:
    return open_store(url)


@st.cache_resource(show_spinner=False)
def _config_recorded(url: str, config_sha: str, _store: Store, _config: Config) -> bool:
    from finflow_core.store.config_log import record_config

    return record_config(_store, _config)


def store() -> Store:
    """The database handle (a connection pool shared by all sessions)."""
    cfg = config()
    handle = _store(cfg.paths.database_url)
    _config_recorded(cfg.paths.database_url, cfg.sha256, handle, cfg)  # audit a changed config once
    return handle


@st.cache_resource(show_spinner=False, max_entries=6)
def _bundle(url: str, config_sha: str, version: str, _store: Store, _config: Config) -> ModelBundle:
    from finflow_core.services.models import load_version

    return load_version(_store, _config, version)


def bundle(version: str) -> ModelBundle:
    """A registered model version, loaded (and integrity-checked) once per process."""
    cfg = config()
    return _bundle(cfg.paths.database_url, cfg.sha256, version, store(), cfg)


@st.cache_resource(show_spinner=False, max_entries=8)
def _engine(url: str, config_sha: str, version: str, low: float, high: float,
            _store: Store, _config: Config) -> ScoringEngine:
    from finflow_core.lending.scoring import ScoringEngine

    b = _bundle(url, config_sha, version, _store, _config)
    return ScoringEngine(b, _config, b.strategy.with_edges(low, high))


def champion_engine() -> ScoringEngine | None:
    """The champion with its active strategy, or None before any model is trained.

    Cached per (model version, band edges): a promotion or saved edges give a new engine.
    """
    return _champion_engine(config(), store())


def _champion_engine(cfg: Config, db: Store) -> ScoringEngine | None:
    from finflow_core.services.models import active_strategy, champion_version

    version = champion_version(db)
    if version is None:
        return None
    strategy = active_strategy(db, _bundle(cfg.paths.database_url, cfg.sha256, version, db, cfg))
    return _engine(cfg.paths.database_url, cfg.sha256, version, strategy.low_edge,
                   strategy.high_edge, db, cfg)


def version_engine(version: str) -> ScoringEngine:
    """An engine for one model version, e.g. to explain a case it scored (band edges do not
    matter for an explanation: the champion's engine is reused for its own cases)."""
    from finflow_core.services.models import champion_version

    if version == champion_version(store()):
        engine = champion_engine()
        if engine is not None:
            return engine
    cfg = config()
    b = bundle(version)
    return _engine(cfg.paths.database_url, cfg.sha256, version, b.strategy.low_edge,
                   b.strategy.high_edge, store(), cfg)


_warmed = threading.Event()


def warm_up() -> None:
    """Once per server process, in the background: import the heavy modules (pandas,
    scikit-learn, SHAP, Plotly) and load the champion's scoring engine, so neither the first
    page after sign-in nor the first case opened pays for them."""
    if _warmed.is_set():
        return
    _warmed.set()
    cfg, db = config(), store()

    def work() -> None:
        import plotly.graph_objects  # noqa: F401

        import finflow_core.services.applications  # noqa: F401
        import finflow_core.services.batches  # noqa: F401
        import finflow_core.services.monitoring  # noqa: F401

        try:
            _champion_engine(cfg, db)
        except Exception:  # a failed warm-up only means a slower first use
            logging.getLogger(__name__).warning("warm-up could not load the champion", exc_info=True)

    threading.Thread(target=work, name="finflow-warm-up", daemon=True).start()


def log_run(page: str, seconds: float) -> None:
    """With FINFLOW_LOG_TIMINGS=1, one line per script run on stderr: how long the page took
    on the server (the browser adds its own rendering on top)."""
    if os.environ.get("FINFLOW_LOG_TIMINGS") == "1":
        print(f"finflow-timing page={page!r} seconds={seconds:.3f}", file=sys.stderr, flush=True)


# -- the signed-in user -----------------------------------------------------------------------

def current_user() -> Principal | None:
    """The session's user with roles re-read from the store (a disabled user is signed out)."""
    p = st.session_state.get(USER_KEY)
    if p is None:
        return None
    try:
        fresh = auth.refresh_principal(store(), p)
    except AuthError as exc:
        st.session_state.pop(USER_KEY, None)
        st.session_state[NOTICE_KEY] = exc.message
        return None
    st.session_state[USER_KEY] = fresh
    return fresh


def sign_in(principal: Principal) -> None:
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    st.session_state[USER_KEY] = principal


def sign_out() -> None:
    for key in list(st.session_state.keys()):
        del st.session_state[key]


def guard(action: str | None = None) -> Principal:
    """Stop the page unless a signed-in user may perform ``action``.

    Runs first in every page file: a deep link to a page URL on a freshly started server
    runs the page without ``app.py``, so the page itself must refuse a signed-out visitor.
    """
    user = current_user()
    if user is None:
        notice = st.session_state.pop(NOTICE_KEY, None)
        if notice:
            st.warning(notice)
        st.info("You are not signed in. [Sign in to FinFlow](./)")
        st.stop()
    if action is not None and not can(user, action):
        st.warning("Your role does not give access to this page.")
        st.stop()
    return user


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
    show = {"stable": st.success, "watch": st.warning, "alert": st.error}.get(status, st.info)
    show(f"Drift: **{status.upper()}**{psi}{limits}. {ADVICE.get(status, '')}", icon=":material/monitor_heart:")


def error(exc: Any) -> None:
    """Show a FinFlow error's message (never a traceback)."""
    st.error(getattr(exc, "message", None) or str(exc))
