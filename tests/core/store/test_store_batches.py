"""Nothing lost, nothing doubled: a batch is stored all or nothing, once per file (chunks in
short transactions under an invisible loading state, published at once)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from store_helpers import (
    LENDING_TABLES,
    MANAGER,
    OFFICER,
    PASSWORD,
    BatchFiles,
    Lending,
    with_bad_rows,
)
from trail import audit_rows

from finflow_core.errors import BatchRejected
from finflow_core.lending.synthetic import generate_applications
from finflow_core.store import batch_queries, batch_writer
from finflow_core.store.audit_chain import verify_audit
from finflow_core.store.decision_check import verify_decisions
from finflow_core.store.rollup import check_rollups

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures


def test_the_same_file_twice_is_stored_once(ff: Lending, batches_dir: BatchFiles) -> None:
    records = BatchFiles.records(batches_dir.a)
    first = ff.run(batches_dir.a, chunk_rows=500)
    assert not first.already_stored
    assert first.rows_in == records and first.rows_quarantined > 0
    after_first = ff.counts()

    second = ff.run(batches_dir.a, chunk_rows=500)
    assert second.already_stored
    assert second.batch_id == first.batch_id
    assert ff.counts() == after_first  # not one row more anywhere, audit included
    assert ff.count("batches") == 1
    assert ff.stored_rows(first.batch_id) == records
    assert ff.count("applications") == first.rows_valid
    assert ff.count("quarantine_rows") == first.rows_quarantined
    assert ff.count("scores") == first.rows_valid
    assert ff.count("decisions") == first.bands["low"] + first.bands["high"]
    assert second.bands == first.bands and second.rows_valid == first.rows_valid
    with ff.store.connect() as conn:
        assert check_rollups(conn) == []


def test_the_same_content_under_another_name_is_recognised_by_its_hash(
    ff_sqlite: Lending, batches_dir: BatchFiles, tmp_path: Path
) -> None:
    ff = ff_sqlite
    first = ff.run(batches_dir.a)
    copy = tmp_path / "renamed_copy.csv"
    copy.write_bytes(batches_dir.a.read_bytes())
    again = ff.run(copy)
    uploaded = ff.run(batches_dir.a.read_bytes(), name="upload.csv")  # as the app uploads it
    assert again.already_stored and uploaded.already_stored
    assert again.batch_id == uploaded.batch_id == first.batch_id
    assert ff.count("batches") == 1


def test_two_different_files_are_two_batches(ff_sqlite: Lending, batches_dir: BatchFiles) -> None:
    ff = ff_sqlite
    a, b = ff.run(batches_dir.a), ff.run(batches_dir.b)
    assert a.batch_id != b.batch_id
    assert ff.count("batches") == 2
    assert ff.count("applications") + ff.count("quarantine_rows") == (
        BatchFiles.records(batches_dir.a) + BatchFiles.records(batches_dir.b))
    with ff.store.connect() as conn:
        assert check_rollups(conn) == []
    assert verify_decisions(ff.store).ok


def test_a_run_that_fails_half_way_leaves_nothing_and_a_rerun_stores_it_once(
    ff: Lending, batches_dir: BatchFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = ff.counts()
    calls = {"n": 0}
    real = batch_writer.StoreSink.write_prepared

    def fail_on_second(self: batch_writer.StoreSink, prepared) -> None:  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk unplugged half-way")
        real(self, prepared)

    monkeypatch.setattr(batch_writer.StoreSink, "write_prepared", fail_on_second)
    with pytest.raises(RuntimeError, match="half-way"):
        ff.run(batches_dir.a, chunk_rows=300)
    assert calls["n"] == 2
    after = ff.counts()
    assert {t: after[t] for t in LENDING_TABLES} == dict.fromkeys(LENDING_TABLES, 0)
    assert after == before  # audit_log and audit_head included: no entry for it
    assert [e for e in audit_rows(ff.store) if e["subject_type"] == "batch"] == []
    assert batch_queries.stored_summary(ff.store, "B-" + "0" * 16) is None

    monkeypatch.setattr(batch_writer.StoreSink, "write_prepared", real)
    summary = ff.run(batches_dir.a, chunk_rows=300)
    assert not summary.already_stored
    assert ff.count("batches") == 1
    assert ff.stored_rows(summary.batch_id) == BatchFiles.records(batches_dir.a)
    assert ff.run(batches_dir.a, chunk_rows=300).already_stored
    assert ff.stored_rows(summary.batch_id) == BatchFiles.records(batches_dir.a)
    assert [e["action"] for e in audit_rows(ff.store, "batch", summary.batch_id)] == [
        "batch_uploaded", "batch_scored", "drift_measured"]
    assert verify_audit(ff.store).ok and verify_decisions(ff.store).ok


def test_a_batch_stored_in_many_small_transactions_is_the_batch_stored_in_few(
    ff_sqlite: Lending, batches_dir: BatchFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each write transaction takes its share of a chunk's rows (applications, scores and
    automatic decisions sliced alike): 7 rows per transaction store what 2,500 store."""
    from sqlalchemy import text

    def stored(batch_id: str) -> list[tuple]:
        with ff_sqlite.store.connect() as conn:
            return [tuple(r) for r in conn.execute(text(
                "SELECT a.row_number, a.external_id, a.data, a.probability, a.band, a.status, "
                "a.decided_kind, a.expected_profit, s.reasons, s.ev_approve, d.outcome, d.kind, "
                "d.reason, d.application_id = a.id FROM applications a "
                "JOIN scores s ON s.application_id = a.id "
                "LEFT JOIN decisions d ON d.id = a.current_decision_id "
                "WHERE a.batch_id = :b ORDER BY a.row_number"), {"b": batch_id})]

    monkeypatch.setattr(batch_writer, "ROWS_PER_TRANSACTION", 7)
    small = ff_sqlite.run(batches_dir.a, chunk_rows=150)
    ff_sqlite.wb(MANAGER).batches.void(small.batch_id, "stored again in larger transactions")
    monkeypatch.setattr(batch_writer, "ROWS_PER_TRANSACTION", 2_500)
    large = ff_sqlite.run(batches_dir.a, chunk_rows=150)
    rows = stored(small.batch_id)
    assert len(rows) == small.rows_valid == large.rows_valid > 150
    assert rows == stored(large.batch_id)
    assert sum(1 for r in rows if r[10] is not None) == small.bands["low"] + small.bands["high"]
    assert all(r[13] for r in rows if r[10] is not None)  # each decision is its application's
    assert verify_decisions(ff_sqlite.store).ok and check_rollups_ok(ff_sqlite)


def test_rows_sealed_ahead_under_ids_another_writer_took_are_sealed_again_under_the_lock(
    ff_sqlite: Lending, batches_dir: BatchFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer seals a transaction's rows before it takes the write lock, guessing their
    ids; when another application was stored in between, the guess is wrong and the rows
    must be sealed again under the lock (else every seal would fail verify)."""
    real = batch_writer.StoreSink._seal_ahead
    guesses = {"wrong": 0}

    def stale_guess(self, rows):  # type: ignore[no-untyped-def]
        sealed = real(self, rows)
        guesses["wrong"] += 1
        return self._sealed(rows, sealed.app_ids - 1)  # an id another writer has taken

    monkeypatch.setattr(batch_writer, "ROWS_PER_TRANSACTION", 50)
    monkeypatch.setattr(batch_writer.StoreSink, "_seal_ahead", stale_guess)
    summary = ff_sqlite.run(batches_dir.a, chunk_rows=150)
    assert guesses["wrong"] > 2
    assert ff_sqlite.count("applications") == summary.rows_valid
    result = verify_decisions(ff_sqlite.store)
    assert result.ok, result.problems[:3]
    assert verify_audit(ff_sqlite.store).ok


def test_a_published_load_leaves_no_wal_pages_for_the_next_writer_to_copy(
    ff_sqlite: Lending, batches_dir: BatchFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load checkpoints its WAL rarely while storing; publishing copies what is left, so
    the next sign-in's commit is not the one that pays for it."""
    from finflow_core.store.engine import Store

    real = Store.checkpoint
    seen: list[tuple[bool, tuple[int, int] | None]] = []

    def spy(self: Store) -> tuple[int, int] | None:
        published = ff_sqlite.count("batches", "WHERE state = 'published'") == 1
        result = real(self)
        seen.append((published, result))
        return result

    monkeypatch.setattr(Store, "checkpoint", spy)
    ff_sqlite.run(batches_dir.a, chunk_rows=150)
    assert len(seen) == 1
    published, result = seen[0]
    assert published and result is not None
    frames, copied = result
    assert frames > 0 and copied == frames


def check_rollups_ok(ff: Lending) -> bool:
    with ff.store.connect() as conn:
        return check_rollups(conn) == []


def test_a_failure_while_preparing_a_later_part_leaves_nothing(
    ff: Lending, batches_dir: BatchFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk is prepared (encoded, sealed) before its transactions begin: an error while
    preparing a later chunk reaches the run, and what earlier chunks stored is removed."""
    real = batch_writer.StoreSink.prepare_chunk
    calls = {"n": 0}

    def fail_on_third(self, chunk, scored):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise MemoryError("out of memory while encoding")
        return real(self, chunk, scored)

    monkeypatch.setattr(batch_writer.StoreSink, "prepare_chunk", fail_on_third)
    with pytest.raises(MemoryError):
        ff.run(batches_dir.a, chunk_rows=100)
    assert calls["n"] == 3
    assert {t: ff.count(t) for t in LENDING_TABLES} == dict.fromkeys(LENDING_TABLES, 0)


def test_a_failure_while_finishing_leaves_nothing(
    ff: Lending, batches_dir: BatchFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After every chunk was written, a failure in the last step still rolls it all back."""
    import finflow_core.store.batch_publish as module

    def broken_audit(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("audit unavailable")

    before = ff.counts()
    monkeypatch.setattr(module, "append_audit", broken_audit)
    with pytest.raises(RuntimeError, match="audit unavailable"):
        ff.run(batches_dir.a, chunk_rows=400)
    assert ff.counts() == before


@pytest.mark.parametrize("content", [
    b"",
    b"application_id,loan_amount\nA1,5000\n",
    "\ufeffnot,a,batch\n1,2,3\n".encode(),
])
def test_files_that_are_not_batches_are_rejected_before_anything_is_stored(
    ff_sqlite: Lending, content: bytes
) -> None:
    before = ff_sqlite.counts()
    with pytest.raises(BatchRejected):
        ff_sqlite.run(content, name="bad.csv")
    assert ff_sqlite.counts() == before


def test_a_header_only_file_is_rejected_and_nothing_is_stored(
    ff_sqlite: Lending, batches_dir: BatchFiles
) -> None:
    ff = ff_sqlite
    header = batches_dir.a.read_text().splitlines()[0] + "\n"
    before = ff.counts()
    with pytest.raises(BatchRejected, match="no applications"):
        ff.run(header.encode(), name="empty.csv")
    assert ff.counts() == before


def test_a_batch_where_every_row_is_quarantined_is_stored_whole(
    ff_sqlite: Lending, batches_dir: BatchFiles
) -> None:
    df = pd.read_csv(batches_dir.a, dtype=str).head(40)
    df["credit_score"] = "unknown"
    summary = ff_sqlite.run(df.to_csv(index=False).encode(), name="all_bad.csv")
    assert (summary.rows_in, summary.rows_valid, summary.rows_quarantined) == (40, 0, 40)
    assert ff_sqlite.stored_rows(summary.batch_id) == 40
    assert ff_sqlite.count("quarantine_issues") >= 40
    with ff_sqlite.store.connect() as conn:
        assert check_rollups(conn) == []
    assert verify_decisions(ff_sqlite.store).ok


def test_exports_are_made_from_the_store_and_match_it(
    ff_sqlite: Lending, batches_dir: BatchFiles, tmp_path: Path
) -> None:
    summary = ff_sqlite.run(batches_dir.a, out_dir=tmp_path / "out")
    decisions = pd.read_csv(tmp_path / "out" / "decisions.csv")
    quarantine = pd.read_csv(tmp_path / "out" / "quarantine.csv", dtype=str)
    assert len(decisions) == summary.rows_valid
    assert len(quarantine) == summary.rows_quarantined
    assert decisions["band"].value_counts().to_dict() == {k: v for k, v in summary.bands.items() if v}
    # a hostile cell is defused in the export, as written in the file otherwise
    assert quarantine["industry"].str.startswith("'=").any()
    # the same file again: the same exports (nothing was added)
    again = ff_sqlite.run(batches_dir.a, out_dir=tmp_path / "out2")
    assert again.already_stored
    for name in ("decisions.csv", "quarantine.csv", "quarantine_issues.csv", "summary.json"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "out2" / name).read_bytes()


# -- a real kill --------------------------------------------------------------------------------

def _kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float = 120) -> None:
    """SIGKILL ``proc`` once ``ready()`` says it is part-way through its transaction."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None and not ready():
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed: use a bigger file"
        assert ready(), "the run never got part-way"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _loaded_some(ff: Lending, rows: int) -> Callable[[], bool]:
    """Part-way: more than ``rows`` applications of the loading batch are committed."""
    def ready() -> bool:
        return ff.count("applications") > rows
    return ready


def _after_the_kill(ff: Lending, cmd: list[str], env: dict[str, str], records: int) -> None:
    """Nothing partial is visible; the rerun removes the dead load (audited) and stores the
    file exactly once."""
    manager = ff.wb(MANAGER)
    assert ff.count("batches", "WHERE state = 'loading'") == 1 and ff.count("applications") > 0
    assert manager.batches.list() == [] and manager.portfolio.summary().total == 0
    assert ff.wb(OFFICER).review.queue().total == 0 and manager.drift.runs() == []
    assert verify_audit(ff.store).ok and verify_decisions(ff.store).ok
    assert [e for e in audit_rows(ff.store) if e["subject_type"] == "batch"] == []

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["rows_in"] == records and not summary["already_stored"]
    assert ff.count("batches") == 1
    assert ff.stored_rows(summary["batch_id"]) == records
    assert ff.count("applications") == ff.count("scores") == summary["rows_valid"]
    assert ff.count("quarantine_rows") == summary["rows_quarantined"] > 0
    batch_actions = [e["action"] for e in audit_rows(ff.store) if e["subject_type"] == "batch"]
    assert batch_actions == ["batch_load_abandoned", "batch_uploaded", "batch_scored",
                             "drift_measured"]
    with ff.store.connect() as conn:
        assert check_rollups(conn) == []
    assert verify_audit(ff.store).ok and verify_decisions(ff.store).ok


def _big_weekly_run(ff: Lending, tmp_path: Path, rows: int, seed: int,
                    chunk_rows: int) -> tuple[Path, list[str], dict[str, str]]:
    """A ``rows``-row file (a few bad rows) and the `finflow weekly-run` command that stores it
    as ann.analyst, in chunks of ``chunk_rows``."""
    big = tmp_path / "big.csv"
    with_bad_rows(generate_applications(rows, seed=seed), every=997).to_csv(big, index=False)
    ff.users()
    env = dict(os.environ, FINFLOW_USER="ann.analyst", FINFLOW_PASSWORD=PASSWORD)
    cmd = [sys.executable, "-m", "finflow_core.cli", "weekly-run", "--data", str(big),
           "--chunk-rows", str(chunk_rows), "--json"]
    return big, cmd, env


@pytest.mark.heavy
def test_a_killed_weekly_run_leaves_nothing_and_the_rerun_stores_the_file_exactly_once(
    ff_sqlite: Lending, tmp_path: Path
) -> None:
    """SIGKILL `finflow weekly-run` part-way through a 60,000-row file, then run it again."""
    big, cmd, env = _big_weekly_run(ff_sqlite, tmp_path, 60_000, seed=99, chunk_rows=5000)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _kill_when(proc, _loaded_some(ff_sqlite, 12_000))  # several chunks committed, not published
    _after_the_kill(ff_sqlite, cmd, env, BatchFiles.records(big))


@pytest.mark.heavy
@pytest.mark.postgres
def test_a_killed_weekly_run_on_postgres_leaves_nothing_and_the_rerun_stores_it_once(
    ff_pg: Lending, tmp_path: Path
) -> None:
    big, cmd, env = _big_weekly_run(ff_pg, tmp_path, 30_000, seed=98, chunk_rows=3000)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _kill_when(proc, _loaded_some(ff_pg, 6_000))
    _after_the_kill(ff_pg, cmd, env, BatchFiles.records(big))
