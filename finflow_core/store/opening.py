"""Opening an installation's database: check the file, migrate, clear dead loads.

Kept apart from :mod:`finflow_core.store.engine` (the connection and its pragmas), which the
migrations and the batch loads themselves build on.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from finflow_core.errors import FinFlowError
from finflow_core.store import engine as store_engine
from finflow_core.store.batch_loads import recover_abandoned
from finflow_core.store.engine import (
    Store,
    check_sqlite_file,
    ensure_sqlite_file,
    make_engine,
    normalise_url,
    sqlite_path,
)
from finflow_core.store.faults import translate
from finflow_core.store.migrate import upgrade_to_head


def open_store(url: str | URL, *, upgrade: bool = True, recover: bool = True,
               prior_use: Iterable[Path] = (), stale: timedelta | None = None) -> Store:
    """Open the database at ``url`` and bring its schema up to date.

    A SQLite file is checked first (:func:`check_sqlite_file`: ``prior_use`` are files that
    prove the installation was used before) and created 0600 in a 0700 folder if it is new.
    With ``upgrade`` (the default) pending migrations are applied (they only ever add); a
    database written by a newer FinFlow is refused
    (:class:`~finflow_core.store.migrate.SchemaVersionError`). With ``recover`` (and
    ``upgrade``), batch loads whose process died are removed (audited), see
    :func:`finflow_core.store.batch_loads.recover_abandoned` (``stale``: when a load from
    another host counts as abandoned; default ten minutes).
    """
    parsed = normalise_url(url)
    path = sqlite_path(parsed)
    engine: Engine | None = None
    try:
        if path is not None:
            check_sqlite_file(path, prior_use)
            ensure_sqlite_file(path)
        engine = make_engine(parsed)
        if upgrade:
            upgrade_to_head(engine)
        store = Store(engine)
        if upgrade and recover:
            recover_abandoned(store, **({} if stale is None else {"stale": stale}))
        return store
    except BaseException as exc:
        if engine is not None:
            engine.dispose()
        if isinstance(exc, FinFlowError):
            raise
        fault = translate(exc, str(path or parsed.render_as_string(hide_password=True)),
                          store_engine.SQLITE_BUSY_TIMEOUT_MS / 1000)
        if fault is None:
            raise
        raise fault from None
