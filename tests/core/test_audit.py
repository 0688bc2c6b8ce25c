"""The hash-chained audit trail: format, atomicity, tamper detection, concurrency, export."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from trail import audit_rows

from finflow_core.store import Store, open_store
from finflow_core.store.audit_chain import (
    AuditChainError,
    append_audit,
    canonical_json,
    entry_hash,
    export_audit_csv,
    verify_audit,
    verify_entries,
)
from finflow_core.store.tables import audit_head, audit_log

ZERO = "0" * 64


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'finflow.db'}")
    yield s
    s.close()


def append_n(store: Store, n: int, **kw: Any) -> None:
    for i in range(1, n + 1):
        with store.begin() as conn:
            append_audit(conn, "tester", "edit", "case", f"C{i}", {"i": i}, **kw)


def drop_guards(conn: Connection) -> None:
    """What an attacker with raw database access does first."""
    if conn.dialect.name == "sqlite":
        conn.execute(text("DROP TRIGGER audit_log_no_update"))
        conn.execute(text("DROP TRIGGER audit_log_no_delete"))
    else:
        conn.execute(text("DROP TRIGGER audit_log_append_only ON audit_log"))


def rows(store: Store) -> list[dict[str, Any]]:
    with store.connect() as conn:
        return [dict(r) for r in conn.execute(select(audit_log).order_by(audit_log.c.seq)).mappings()]


# -- format ---------------------------------------------------------------------------------

def test_entries_follow_the_documented_hash_formula(store: Store) -> None:
    with store.begin() as conn:
        first = append_audit(conn, "alice", "model_promoted", "model", "m-3",
                             {"b": 2, "a": [1, "x"]}, model_version="v3")
    append_n(store, 2)
    stored = rows(store)
    assert [r["seq"] for r in stored] == [1, 2, 3]
    assert stored[0]["prev_hash"] == ZERO and first.seq == 1
    assert stored[0]["details"] == '{"a":[1,"x"],"b":2}'
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", stored[0]["at"])
    prev = ZERO
    for row in stored:  # recompute independently of finflow_core.store.audit_chain
        payload = {k: row[k] for k in ("seq", "at", "actor", "action", "subject_type",
                                       "subject_id", "model_version", "details")}
        body = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert row["prev_hash"] == prev
        assert row["hash"] == hashlib.sha256(f"{prev}|{body}".encode()).hexdigest()
        prev = row["hash"]
    with store.connect() as conn:
        assert tuple(conn.execute(select(audit_head.c.seq, audit_head.c.hash)).one()) == (3, prev)
    result = verify_audit(store)
    assert (result.ok, result.entries, result.first_bad_seq) == (True, 3, None)


def test_details_are_canonicalised() -> None:
    when = datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert canonical_json({"z": {3, 1}, "a": (Decimal("1.10"), when, float("nan")), "é": 1}) == (
        '{"a":["1.10","2025-01-02T03:04:05.000006+00:00","nan"],"z":[1,3],"é":1}'
    )
    with pytest.raises(TypeError, match="convert it"):
        canonical_json({"x": object()})


def test_append_must_run_inside_a_write_transaction(store: Store) -> None:
    with store.connect() as conn, pytest.raises(RuntimeError, match="store.begin"):
        append_audit(conn, "tester", "edit", "case", "C1")
    with store.engine.connect() as conn, pytest.raises(RuntimeError, match="inside the caller"):
        append_audit(conn, "tester", "edit", "case", "C1")
    with store.begin() as conn, pytest.raises(ValueError, match="longer than 64"):
        append_audit(conn, "x" * 65, "edit", "case", "C1")
    assert verify_audit(store).entries == 0


def test_an_entry_rolls_back_with_the_change_it_records(store: Store) -> None:
    with pytest.raises(ZeroDivisionError), store.begin() as conn:
        append_audit(conn, "tester", "edit", "case", "C1")
        1 / 0  # noqa: B018 - the audited change fails
    assert rows(store) == []
    append_n(store, 1)
    assert [r["seq"] for r in rows(store)] == [1]
    assert verify_audit(store).ok


def test_the_database_refuses_updates_and_deletes_of_the_log(store: Store) -> None:
    append_n(store, 2)
    for statement in (update(audit_log).values(actor="mallory"), delete(audit_log)):
        with pytest.raises(DBAPIError, match="append-only"), store.begin() as conn:
            conn.execute(statement)
    if store.dialect == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"), store.begin() as conn:
            conn.execute(text("TRUNCATE audit_log"))
    assert len(rows(store)) == 2 and verify_audit(store).ok


# -- tamper detection -----------------------------------------------------------------------

def _edit(conn: Connection) -> None:
    conn.execute(update(audit_log).where(audit_log.c.seq == 3).values(details='{"i":999}'))


def _delete_middle(conn: Connection) -> None:
    conn.execute(delete(audit_log).where(audit_log.c.seq == 2))


def _rewrite_with_fresh_hash(conn: Connection) -> None:
    row = conn.execute(select(audit_log).where(audit_log.c.seq == 3)).mappings().one()
    forged = {**row, "actor": "mallory"}
    conn.execute(update(audit_log).where(audit_log.c.seq == 3)
                 .values(actor="mallory", hash=entry_hash(row["prev_hash"], forged)))


def _insert_forged_entry(conn: Connection) -> None:
    last = conn.execute(select(audit_log).where(audit_log.c.seq == 5)).mappings().one()
    forged = {**last, "seq": 6, "actor": "mallory", "prev_hash": last["hash"]}
    forged["hash"] = entry_hash(last["hash"], forged)
    conn.execute(insert(audit_log).values(**forged))


def _truncate_tail(conn: Connection) -> None:
    conn.execute(delete(audit_log).where(audit_log.c.seq >= 4))


def _renumber_after_delete(conn: Connection) -> None:
    conn.execute(delete(audit_log).where(audit_log.c.seq == 2))
    for seq in (3, 4, 5):
        conn.execute(update(audit_log).where(audit_log.c.seq == seq).values(seq=seq - 1))


def _drop_head(conn: Connection) -> None:
    conn.execute(delete(audit_head))


TAMPERING: dict[str, tuple[Callable[[Connection], None], str, int | None]] = {
    "edited": (_edit, "changed", 3),
    "deleted": (_delete_middle, "removed", 2),
    "rewritten-with-fresh-hash": (_rewrite_with_fresh_hash, "changed", 3),
    "inserted": (_insert_forged_entry, "inserted", 6),
    "tail-truncated": (_truncate_tail, "truncated", 4),
    "renumbered": (_renumber_after_delete, "changed", 2),
    "head-deleted": (_drop_head, "head_missing", None),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampering_is_detected_and_located(store: Store, case: str) -> None:
    tamper, problem, seq = TAMPERING[case]
    append_n(store, 5)
    with store.begin() as conn:
        drop_guards(conn)
        tamper(conn)
    result = verify_audit(store)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, problem, seq)
    assert result.message and (seq is None or str(seq) in result.message)


def test_appending_without_a_head_fails_loudly(sqlite_store: Store) -> None:
    with sqlite_store.begin() as conn:
        conn.execute(delete(audit_head))
    with pytest.raises(AuditChainError, match="audit_head"), sqlite_store.begin() as conn:
        append_audit(conn, "tester", "edit", "case", "C1")


# -- concurrency ----------------------------------------------------------------------------

def test_eight_writers_append_fifty_entries_each(store_url: str) -> None:
    open_store(store_url).close()  # migrate once
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        store = open_store(store_url, upgrade=False)  # own engine: like another process
        try:
            barrier.wait()
            for i in range(50):
                with store.begin() as conn:
                    append_audit(conn, f"writer{n}", "edit", "case", f"{n}-{i}", {"i": i})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            store.close()

    started = time.monotonic()
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert errors == []
    with open_store(store_url, upgrade=False) as store:
        result = verify_audit(store)
        assert (result.ok, result.entries, result.head_seq) == (True, 400, 400)
        trail = audit_rows(store)
        assert [e["seq"] for e in trail] == list(range(1, 401))
        for n in range(8):  # each writer's entries are all there, in its own order
            mine = [e["details"]["i"] for e in trail if e["actor"] == f"writer{n}"]
            assert mine == list(range(50))
        assert [e["at"] for e in trail] == sorted(e["at"] for e in trail)
    assert elapsed < 30, f"400 appends took {elapsed:.1f} s"


# -- search and export ----------------------------------------------------------------------

def _seed(store: Store) -> None:
    entries = [
        ("alice", "upload", "batch", "B1", datetime(2025, 1, 1, 10, tzinfo=UTC)),
        ("bob", "decide", "application", "A1", datetime(2025, 1, 2, 10, tzinfo=UTC)),
        ("bob", "decide", "application", "A2", datetime(2025, 1, 3, 10, tzinfo=UTC)),
        ("carol", "promote", "model", "M1", datetime(2025, 1, 4, 10, tzinfo=UTC)),
        ("bob", "decide", "application", "=HYPERLINK(\"http://x\")", datetime(2025, 1, 5, tzinfo=UTC)),
    ]
    for actor, action, subject_type, subject_id, at in entries:
        with store.begin() as conn:
            append_audit(conn, actor, action, subject_type, subject_id, {"note": "ok"},
                         model_version="v1" if action == "decide" else None, at=at)


def test_audit_trail_filters(sqlite_store: Store) -> None:
    _seed(sqlite_store)

    def seqs(**filters: Any) -> list[int]:
        return [e["seq"] for e in audit_rows(sqlite_store, **filters)]

    assert seqs() == [1, 2, 3, 4, 5]
    assert seqs(subject_type="application", subject_id="A2") == [3]
    assert seqs(actor="bob") == [2, 3, 5]
    assert seqs(since="2025-01-02", until=datetime(2025, 1, 4, 10, tzinfo=UTC)) == [2, 3]
    assert seqs(actor="bob", limit=2, newest_first=True) == [5, 3]
    assert seqs(action="promote") == [4]
    entry = audit_rows(sqlite_store, subject_id="A1")[0]
    assert entry["details"] == {"note": "ok"} and entry["model_version"] == "v1"


def test_exported_csv_can_be_verified_offline(sqlite_store: Store, tmp_path: Path) -> None:
    _seed(sqlite_store)
    target = tmp_path / "audit.csv"
    exported = export_audit_csv(sqlite_store, target, excel_safe=False)
    assert target.read_text(encoding="utf-8") == exported
    entries = list(csv.DictReader(io.StringIO(exported)))
    with sqlite_store.connect() as conn:
        head = tuple(conn.execute(select(audit_head.c.seq, audit_head.c.hash)).one())
    assert verify_entries(entries, head=(int(head[0]), str(head[1]))).ok
    cut = verify_entries(entries[:3], head=(int(head[0]), str(head[1])))
    assert (cut.ok, cut.problem, cut.first_bad_seq) == (False, "truncated", 4)
    entries[1]["subject_id"] = "A9"
    result = verify_entries(entries)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "changed", 2)


def test_csv_export_defuses_spreadsheet_formulas_by_default(sqlite_store: Store) -> None:
    _seed(sqlite_store)
    exported = export_audit_csv(sqlite_store, actor="bob")
    cells = [r["subject_id"] for r in csv.DictReader(io.StringIO(exported))]
    assert cells == ["A1", "A2", "'=HYPERLINK(\"http://x\")"]


def test_an_empty_log_verifies(store: Store) -> None:
    result = verify_audit(store)
    assert (result.ok, result.entries, result.head_seq) == (True, 0, 0)
