"""The installation's services, once per server process, for the app script and the HTTP routes.

Not ``st.cache_resource``: the session-cookie route (``finflow_app.server``) runs outside any
Streamlit script and needs the same context. One context per (config file, home, database
URL), built under a lock so two first requests do not migrate the database twice; shared by
every session and never mutated.
"""

from __future__ import annotations

import os
import threading

from finflow_core.lending.config import ENV_CONFIG, ENV_DATABASE_URL, ENV_HOME, load_config
from finflow_core.services.context import Context
from finflow_core.services.maintenance import open_context
from finflow_core.services.sessions import Gate

_lock = threading.Lock()
_contexts: dict[tuple[str | None, str, str | None], Context] = {}


def _key() -> tuple[str | None, str, str | None]:
    return (os.environ.get(ENV_CONFIG), os.environ.get(ENV_HOME) or os.getcwd(),
            os.environ.get(ENV_DATABASE_URL))


def context() -> Context:
    """The installation's services context (config, store, clock, model cache)."""
    key = _key()
    found = _contexts.get(key)
    if found is not None:
        return found
    with _lock:
        found = _contexts.get(key)
        if found is None:
            # the guards the CLI has (a lost database, a 0700 data folder); a changed config
            # file is an audit event
            found = _contexts[key] = open_context(load_config())
    return found


def gate() -> Gate:
    return Gate(context())
