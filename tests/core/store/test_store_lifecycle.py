"""The batch lifecycle: a loading batch is invisible, published at once, voided on purpose,
run twice at once, abandoned by a dead process and cleaned up (both backends)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select, update
from store_helpers import ANALYST, MANAGER, OFFICER, BatchFiles, Lending
from trail import audit_rows

from finflow_core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from finflow_core.lending.intake.reader import BatchFile
from finflow_core.lending.scoring import ScoringEngine
from finflow_core.pipeline.local import LocalEngine
from finflow_core.pipeline.run import Part
from finflow_core.store import batch_loads, open_store
from finflow_core.store.audit_chain import verify_audit
from finflow_core.store.batch_loads import BatchBeingLoaded, LoadLost
from finflow_core.store.decision_check import verify_decisions
from finflow_core.store.lending_tables import applications, batches
from finflow_core.store.rollup import check_rollups

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures


class PausedEngine:
    """The local engine, stopping after part ``after`` has been stored until released."""

    name = "local"

    def __init__(self, after: int = 0, chunk_rows: int = 200) -> None:
        self.inner = LocalEngine(chunk_rows=chunk_rows)
        self.after = after
        self.stored = threading.Event()
        self.go = threading.Event()

    def parts(self, batch: BatchFile, scoring: ScoringEngine) -> Iterator[Part]:
        for i, part in enumerate(self.inner.parts(batch, scoring)):
            yield part
            if i == self.after:  # run_batch has written this part when it asks for the next
                self.stored.set()
                assert self.go.wait(120), "the test never released the load"


def wait_for(ready: Any, timeout: float = 60) -> None:
    """Poll ``ready()`` (the store's writer thread commits parts shortly after they are made)."""
    import time

    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class Background:
    """A batch run in a thread; ``result`` is its summary or the exception it raised."""

    def __init__(self, ff: Lending, path: Path, engine: PausedEngine) -> None:
        self.result: Any = None
        self.thread = threading.Thread(target=self._run, args=(ff, path, engine), daemon=True)
        self.thread.start()
        assert engine.stored.wait(120), "the load never got part-way"

    def _run(self, ff: Lending, path: Path, engine: PausedEngine) -> None:
        try:
            self.result = ff.run(path, engine=engine)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            self.result = exc

    def join(self) -> Any:
        self.thread.join(120)
        assert not self.thread.is_alive()
        return self.result


def what_people_see(ff: Lending) -> dict[str, Any]:
    """Every read a person has: batch list, queue, counts, next case, portfolio, drift."""
    officer, manager = ff.wb(OFFICER), ff.wb(MANAGER)
    queue = officer.review.queue(limit=1000)
    return {
        "batches": [b.id for b in manager.batches.list()],
        "queue": [r.id for r in queue.rows], "queue_total": queue.total,
        "amount_queue": [r.id for r in officer.review.queue(order="amount", limit=1000).rows],
        "counts": manager.review.counts(), "next": officer.review.next_case(),
        "portfolio": manager.portfolio.summary().total,
        "weeks": manager.portfolio.filter_options().weeks,
        "drift": [r.batch_id for r in manager.drift.runs()],
    }


def test_a_loading_batch_is_invisible_until_it_is_published_at_once(
    ffa: Lending, batches_dir: BatchFiles
) -> None:
    ff = ffa
    before = what_people_see(ff)
    trail_before = len(audit_rows(ff.store))
    engine = PausedEngine(after=1)
    base = ff.count("applications")
    run = Background(ff, batches_dir.b, engine)
    wait_for(lambda: ff.count("applications") - base > 200)  # two parts committed
    with ff.store.connect() as conn:
        loading = conn.execute(select(batches.c.id, batches.c.state, batches.c.rows_written)
                               .where(batches.c.state == "loading")).one()
        stored = conn.execute(select(applications.c.id, applications.c.external_id).where(
            applications.c.batch_id == loading.id)).all()
    assert len(stored) > 200 and loading.rows_written >= len(stored)  # chunks are committed...
    assert what_people_see(ff) == before  # ...and nobody sees them
    manager = ff.wb(MANAGER)
    with pytest.raises(NotFound):
        manager.batches.summary(loading.id)
    with pytest.raises(NotFound):
        ff.wb(OFFICER).review.case(stored[0].id)
    assert ff.wb(OFFICER).review.find(stored[-1].external_id) == []
    assert verify_audit(ff.store).ok and verify_decisions(ff.store).ok
    with ff.store.connect() as conn:
        assert check_rollups(conn) == []
    assert len(audit_rows(ff.store)) == trail_before  # audited when published, not before
    # people keep working meanwhile: a decision and a sign-in need the write lock
    case = ff.wb(OFFICER).review.next_case()
    ff.wb(OFFICER).review.decide(case, "approve")
    engine.go.set()
    summary = run.join()
    assert summary.batch_id == loading.id and not summary.already_stored
    after = what_people_see(ff)
    assert loading.id in after["batches"] and loading.id in after["drift"]
    assert after["portfolio"] == before["portfolio"] + summary.rows_valid
    assert after["queue_total"] == before["queue_total"] - 1 + summary.bands["medium"]
    assert ff.stored_rows(summary.batch_id) == BatchFiles.records(batches_dir.b)
    with ff.store.connect() as conn:
        assert check_rollups(conn) == []
    assert verify_audit(ff.store).ok and verify_decisions(ff.store).ok


def test_the_same_file_twice_at_once_is_stored_once_and_the_other_run_says_who(
    ff: Lending, batches_dir: BatchFiles
) -> None:
    engine = PausedEngine(after=0)
    first = Background(ff, batches_dir.a, engine)
    with pytest.raises(BatchBeingLoaded) as caught:
        ff.run(batches_dir.a)
    err = caught.value
    assert err.exit_code == 10 and "being stored right now" in err.message
    assert ANALYST.username in err.message and str(err.details["loader_pid"]) in err.message
    preview = ff.wb(ANALYST).batches.preview(batches_dir.a)  # the preview does not store
    assert preview.stored is None
    engine.go.set()
    summary = first.join()
    again = ff.run(batches_dir.a)
    assert again.already_stored and again.batch_id == summary.batch_id
    assert ff.count("batches") == 1
    assert ff.stored_rows(summary.batch_id) == BatchFiles.records(batches_dir.a)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_an_abandoned_load_is_removed_when_the_store_is_opened_and_audited(
    ff: Lending, batches_dir: BatchFiles
) -> None:
    """A load whose process died is cleaned up by the next open; its late writer (the same
    row taken over) publishes nothing."""
    engine = PausedEngine(after=1)
    run = Background(ff, batches_dir.a, engine)
    wait_for(lambda: ff.count("applications") > 0)
    with ff.store.connect() as conn:
        batch_id = conn.execute(select(batches.c.id).where(batches.c.state == "loading")).scalar_one()
    assert ff.count("applications") > 0
    opened = open_store(ff.url)  # the loader is alive (this process): nothing is touched
    opened.close()
    assert ff.count("batches", "WHERE state = 'loading'") == 1
    with ff.store.begin() as conn:  # now it looks like a process that died
        conn.execute(update(batches).where(batches.c.id == batch_id).values(loader_pid=_dead_pid()))
    opened = open_store(ff.url)
    opened.close()
    assert ff.count("batches") == 0 and ff.count("applications") == 0
    assert ff.count("decisions") == ff.count("scores") == ff.count("quarantine_rows") == 0
    [entry] = [e for e in audit_rows(ff.store) if e["action"] == "batch_load_abandoned"]
    assert entry["subject_id"] == batch_id and entry["details"]["rows_removed"]["applications"] > 0
    engine.go.set()
    assert isinstance(run.join(), LoadLost)  # the taken-over writer stops, publishing nothing
    assert ff.count("batches") == 0 and ff.count("applications") == 0
    assert verify_audit(ff.store).ok and verify_decisions(ff.store).ok
    summary = ff.run(batches_dir.a)
    assert not summary.already_stored and ff.stored_rows(summary.batch_id) == BatchFiles.records(
        batches_dir.a)


def test_a_live_load_elsewhere_is_never_taken_for_dead_until_its_heartbeat_stops(
    ff: Lending, batches_dir: BatchFiles
) -> None:
    row = batch_loads.LoadRow("B-x", batch_loads.BatchState.LOADING, "f.csv", "ann", "2026-01-01T00:00:00+00:00",
                              4242, "another-host", batch_loads.now_text(), 10)
    assert not batch_loads.is_abandoned(row)
    old = batch_loads.LoadRow(*[*row.__dict__.values()][:7], "2000-01-01T00:00:00.000000+00:00", 10)
    assert batch_loads.is_abandoned(old)
    here = batch_loads.LoadRow(*[*row.__dict__.values()][:5], _dead_pid(),
                               batch_loads.this_loader()[1], "2000-01-01T00:00:00.000000+00:00", 1)
    assert batch_loads.is_abandoned(here)
    alive = batch_loads.LoadRow(*[*row.__dict__.values()][:5], 1, batch_loads.this_loader()[1],
                                "2000-01-01T00:00:00.000000+00:00", 1)
    assert not batch_loads.is_abandoned(alive)  # pid 1 lives: a stale heartbeat is not enough


# -- voiding and running again -----------------------------------------------------------------

def test_a_manager_voids_a_batch_and_the_same_file_runs_again_as_a_new_batch(
    ffa: Lending, batches_dir: BatchFiles, tmp_path: Path
) -> None:
    ff = ffa
    [old_id] = ff.batch_ids()
    officer = ff.wb(OFFICER).review
    claimed = officer.next_case()
    officer.claim(claimed)
    before = what_people_see(ff)
    assert before["queue_total"] > 0 and before["portfolio"] > 0
    with pytest.raises(PermissionDenied):
        ff.wb(ANALYST).batches.void(old_id, "wrong config")
    with pytest.raises(InvalidInput):
        ff.wb(MANAGER).batches.void(old_id, "  ")
    with pytest.raises(InvalidInput, match="control character"):  # it would rewrite a terminal
        ff.wb(MANAGER).batches.void(old_id, "wrong\x1b[2J file")
    result = ff.wb(MANAGER).batches.void(old_id, "the config mapped industry wrongly")
    assert result.open_cases == before["queue_total"]
    seen = what_people_see(ff)
    assert seen["queue_total"] == 0 and seen["queue"] == [] and seen["next"] is None
    assert seen["portfolio"] == 0 and seen["drift"] == [] and seen["weeks"] == []
    assert seen["batches"] == [old_id]  # still in the history, marked voided
    [row] = ff.wb(MANAGER).batches.list()
    assert row.state == "voided" and row.void_reason == "the config mapped industry wrongly"
    assert ff.count("claims") == 0
    with pytest.raises(Conflict, match="voided"):
        officer.decide(claimed, "approve")
    with pytest.raises(Conflict, match="voided"):
        ff.wb(MANAGER).batches.void(old_id, "again")
    kept = ff.wb(MANAGER).batches.summary(old_id)
    assert kept.state == "voided" and kept.voided_by == MANAGER.username
    assert len(ff.wb(MANAGER).batches.decisions(old_id)) == kept.rows_valid  # rows all kept
    [entry] = audit_rows(ff.store, "batch", old_id, action="batch_voided")
    assert entry["actor"] == MANAGER.username and entry["details"]["open_cases_removed"] == result.open_cases
    with ff.store.connect() as conn:
        assert check_rollups(conn) == []
    assert verify_audit(ff.store).ok and verify_decisions(ff.store).ok

    again = ff.run(batches_dir.a)
    assert not again.already_stored and again.batch_id == f"{old_id}-2"
    assert what_people_see(ff)["queue_total"] == before["queue_total"]
    assert ff.wb(MANAGER).portfolio.summary().total == before["portfolio"]
    assert ff.run(batches_dir.a).batch_id == again.batch_id  # one live batch per file
    with ff.store.connect() as conn:
        assert check_rollups(conn) == []
    assert verify_audit(ff.store).ok and verify_decisions(ff.store).ok


def test_the_already_stored_message_says_what_made_it_and_how_to_redo_it(
    ffa: Lending, batches_dir: BatchFiles
) -> None:
    from finflow_core.services.batches import already_stored_text

    preview = ffa.wb(ANALYST).batches.preview(batches_dir.a)
    stored = preview.stored
    assert stored is not None and stored.uploaded_by == ANALYST.username
    message = preview.stored_message
    assert message == already_stored_text(ffa.run(batches_dir.a))
    for part in (stored.batch_id, ffa.version, ffa.config.sha256[:12], ANALYST.username,
                 stored.uploaded_at[:10], "finflow batches void"):
        assert part in message, part


def test_a_failed_run_leaves_no_trace_and_does_not_block_the_next(
    ff: Lending, batches_dir: BatchFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finflow_core.store import batch_writer

    real = batch_writer.StoreSink._write_rows
    calls = {"n": 0}

    def fail_late(self, conn, *args):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real(self, conn, *args)

    monkeypatch.setattr(batch_writer.StoreSink, "_write_rows", fail_late)
    with pytest.raises(OSError):
        ff.run(batches_dir.a, chunk_rows=150)
    assert ff.count("batches") == ff.count("applications") == ff.count("scores") == 0
    monkeypatch.setattr(batch_writer.StoreSink, "_write_rows", real)
    assert not ff.run(batches_dir.a).already_stored


# -- typed-in applications: drift per week, not per application -------------------------------------

def test_typed_in_applications_are_measured_per_week_once_enough_have_arrived(
    ff: Lending, batches_dir: BatchFiles
) -> None:
    import dataclasses

    from finflow_core.lending.config import MonitoringSettings
    from finflow_core.services.context import Context
    from finflow_core.services.workbench import Workbench

    config = dataclasses.replace(ff.config, monitoring=MonitoringSettings(min_rows=5))
    engine = ScoringEngine(ff.engine.bundle, config)
    context = Context(config, ff.store)
    officer = Workbench(context, OFFICER).applications
    manager = Workbench(context, MANAGER)
    rows = pd.read_csv(batches_dir.b, dtype=str, keep_default_na=False).head(40)
    records = [r for r in rows.to_dict("records") if officer.score(r, engine=engine).valid][:5]
    submitted = []
    for record in records[:4]:
        submitted.append(officer.submit(record, engine=engine))
        assert manager.drift.runs() == []  # one application is no population: no drift run
    summary = manager.batches.summary(submitted[0].batch_id)
    assert summary.origin == "form" and summary.drift["status"] == "insufficient_data"
    assert ff.count("drift_runs", "WHERE kind = 'batch'") == 0
    submitted.append(officer.submit(records[4], engine=engine))
    [run] = manager.drift.runs()
    assert run.kind == "period" and run.batch_id is None and run.rows == 5
    assert run.status != "insufficient_data" and run.score_psi is not None
    assert sum(run.counts["score"]) == 5
    assert manager.drift.distribution(run, "score")["batch"].sum() == pytest.approx(1.0)
    # voiding one of them measures the week again: 4 rows are not enough any more
    manager.batches.void(submitted[0].batch_id, "typed in twice by mistake")
    assert manager.drift.runs() == []
    with ff.store.connect() as conn:
        assert check_rollups(conn) == []
    assert verify_audit(ff.store).ok and verify_decisions(ff.store).ok
