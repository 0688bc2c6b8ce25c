"""A load from another host is abandoned only after ``limits.stale_load_minutes`` of silence."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

from sqlalchemy import select, update
from store_helpers import BatchFiles, Lending
from test_store_lifecycle import Background, PausedEngine

from finflow_core.lending.config import LimitsSettings
from finflow_core.services.maintenance import open_installation, stale_after
from finflow_core.store import open_store
from finflow_core.store.batch_loads import LoadLost
from finflow_core.store.lending_tables import batches
from finflow_core.store.tables import iso_utc, utcnow

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures


def test_the_configured_timeout_decides_when_a_silent_load_elsewhere_is_abandoned(
    ff_sqlite: Lending, batches_dir: BatchFiles
) -> None:
    ff = ff_sqlite
    patient = dataclasses.replace(ff.config, limits=LimitsSettings(stale_load_minutes=30))
    assert stale_after(patient) == timedelta(minutes=30)
    engine = PausedEngine(after=0)
    run = Background(ff, batches_dir.a, engine)
    deadline = time.monotonic() + 60
    while ff.count("applications") == 0:  # the first part is committed (by the writer thread)
        assert time.monotonic() < deadline, "the first part was never stored"
        time.sleep(0.02)
    with ff.store.begin() as conn:  # as if another host had loaded it, silent for 20 minutes
        batch_id = conn.execute(select(batches.c.id).where(batches.c.state == "loading")).scalar_one()
        conn.execute(update(batches).where(batches.c.id == batch_id).values(
            loader_host="another-host", heartbeat_at=iso_utc(utcnow() - timedelta(minutes=20))))
    open_installation(patient).close()  # 20 < 30 minutes: it may still be alive
    assert ff.count("batches", "WHERE state = 'loading'") == 1
    open_store(ff.url, stale=timedelta(minutes=25)).close()
    assert ff.count("batches", "WHERE state = 'loading'") == 1
    open_installation(ff.config).close()  # the default, 10 minutes: abandoned, removed
    assert ff.count("batches") == 0 and ff.count("applications") == 0
    engine.go.set()
    assert isinstance(run.join(), LoadLost)  # its writer, had it lived, publishes nothing
    assert ff.count("batches") == 0
