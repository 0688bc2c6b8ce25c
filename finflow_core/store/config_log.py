"""Config changes are audit events too.

The configuration is a file edited outside FinFlow, so its changes are noticed where it
is read: every entry point (the app, the CLI) records the config's SHA-256 against the
store, and a hash different from the last one recorded appends a ``config_changed``
entry (who noticed it, old and new hash, file). The first use records ``config_loaded``.
Entry points start here, so this is also where the installation key is bound to the store
and where a chain without any anchor gets its first one (``store.anchors.first_anchor``).
"""

from __future__ import annotations

import contextlib
import json

from sqlalchemy import Connection, select

from finflow_core.lending.config import Config
from finflow_core.security.keys import load_key
from finflow_core.store import Store
from finflow_core.store.anchors import AnchorError, anchor_folder, first_anchor
from finflow_core.store.audit_chain import append_audit
from finflow_core.store.seals import bind_key, bound_key
from finflow_core.store.tables import audit_head, audit_log

SUBJECT = "config"


def last_recorded(store: Store, config: Config) -> str | None:
    """The config hash last recorded for this dataset, or None."""
    with store.connect() as conn:
        return _recorded(conn, config)


def record_config(store: Store, config: Config, actor: str = "system") -> bool:
    """Append an audit entry if the config differs from the one last recorded; True if so.

    Binds the config's installation key to the store first (if none is), and anchors a
    chain that has no anchor yet (a folder that cannot be written is left to ``audit
    verify`` to report: starting FinFlow does not depend on it)."""
    if bound_key(store) is None:
        bind_key(store, load_key(config, keyed_with=_keyed_with(store)))
    recorded = _record(store, config, actor)
    key = bound_key(store)
    with contextlib.suppress(AnchorError):
        first_anchor(store, key if key is not None else load_key(config), anchor_folder(config))
    return recorded


def _keyed_with(store: Store) -> str | None:
    """The fingerprint of the key the store's audit chain is keyed with (None: not yet)."""
    with store.connect() as conn:
        return conn.execute(select(audit_head.c.key_fingerprint)).scalar() or None


def _record(store: Store, config: Config, actor: str) -> bool:
    if not config.sha256 or last_recorded(store, config) == config.sha256:
        return False
    with store.begin() as conn:
        # read again under the write lock: another process may have recorded it meanwhile
        previous = _recorded(conn, config)
        if previous == config.sha256:
            return False
        append_audit(conn, actor, "config_loaded" if previous is None else "config_changed",
                     SUBJECT, config.dataset_name,
                     {"sha256": config.sha256, "previous_sha256": previous, "source": config.source})
    return True


def _recorded(conn: Connection, config: Config) -> str | None:
    details = conn.execute(
        select(audit_log.c.details)
        .where(audit_log.c.subject_type == SUBJECT)
        .where(audit_log.c.subject_id == config.dataset_name)
        .order_by(audit_log.c.seq.desc()).limit(1)
    ).scalar()
    return None if details is None else json.loads(details).get("sha256")
