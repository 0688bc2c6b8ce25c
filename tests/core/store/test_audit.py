"""The keyed audit chain: format, atomicity, tamper detection, re-keying, concurrency, export."""

from __future__ import annotations

import csv
import hashlib
import hmac
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

from finflow_core.security.keys import InstallationKey
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
from finflow_core.store.seals import bind_key
from finflow_core.store.tables import audit_head, audit_log

ZERO = "0" * 64
KEY = InstallationKey(b"audit-chain-tests-key-0123456789", "tests")


def keyed_store(url: str, *, upgrade: bool = True) -> Store:
    s = open_store(url, upgrade=upgrade)
    bind_key(s, KEY)
    return s


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = keyed_store(store_url)
    yield s
    s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    s = keyed_store(f"sqlite:///{tmp_path / 'finflow.db'}")
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
    chain_key = hmac.new(KEY.secret, b"finflow/audit-chain/v1", hashlib.sha256).digest()
    for row in stored:  # recompute independently of finflow_core.store.audit_chain
        payload = {k: row[k] for k in ("seq", "at", "actor", "action", "subject_type",
                                       "subject_id", "model_version", "details")}
        body = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert row["prev_hash"] == prev
        keyed = hmac.new(chain_key, f"{prev}|{body}".encode(), hashlib.sha256).hexdigest()
        assert row["hash"] == keyed != hashlib.sha256(f"{prev}|{body}".encode()).hexdigest()
        prev = row["hash"]
    with store.connect() as conn:
        head = conn.execute(select(audit_head.c.seq, audit_head.c.hash, audit_head.c.key_fingerprint))
        assert tuple(head.one()) == (3, prev, KEY.fingerprint)
    result = verify_audit(store)
    assert (result.ok, result.entries, result.first_bad_seq, result.keyed_from) == (True, 3, None, 1)


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
    keyed_store(store_url).close()  # migrate once
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        store = keyed_store(store_url, upgrade=False)  # own engine: like another process
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
    with keyed_store(store_url, upgrade=False) as store:
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
    assert verify_entries(entries, head=(int(head[0]), str(head[1])), key=KEY).ok
    cut = verify_entries(entries[:3], head=(int(head[0]), str(head[1])), key=KEY)
    assert (cut.ok, cut.problem, cut.first_bad_seq) == (False, "truncated", 4)
    other = InstallationKey(b"not-this-installations-key-0000", "elsewhere")
    assert verify_entries(entries, key=other).problem == "changed"  # the key is needed
    entries[1]["subject_id"] = "A9"
    result = verify_entries(entries, key=KEY)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "changed", 2)


def test_csv_export_defuses_spreadsheet_formulas_by_default(sqlite_store: Store) -> None:
    _seed(sqlite_store)
    exported = export_audit_csv(sqlite_store, actor="bob")
    cells = [r["subject_id"] for r in csv.DictReader(io.StringIO(exported))]
    assert cells == ["A1", "A2", "'=HYPERLINK(\"http://x\")"]


def test_an_empty_log_verifies(store: Store) -> None:
    result = verify_audit(store)
    assert (result.ok, result.entries, result.head_seq) == (True, 0, 0)


# -- the key: what a database writer who knows the formula cannot do -------------------------

def rechain_without_the_key(conn: Connection, edit: Callable[[dict[str, Any]], None]) -> None:
    """The attack the old README invited: change an entry, recompute every hash and
    prev_hash with the documented (unkeyed) formula, and move the head to match."""
    prev = ZERO
    for row in conn.execute(select(audit_log).order_by(audit_log.c.seq)).mappings().all():
        forged = dict(row)
        edit(forged)
        forged["prev_hash"] = prev
        forged["hash"] = entry_hash(prev, forged)
        conn.execute(update(audit_log).where(audit_log.c.seq == row["seq"]).values(**forged))
        prev = forged["hash"]
    conn.execute(update(audit_head).values(hash=prev))


def test_recomputing_the_chain_with_the_documented_formula_is_named(store: Store) -> None:
    append_n(store, 5)

    def mallory(row: dict[str, Any]) -> None:
        if row["seq"] == 3:
            row["actor"] = "mallory"

    with store.begin() as conn:
        drop_guards(conn)
        rechain_without_the_key(conn, mallory)
    result = verify_audit(store)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "changed", 1)
    assert "recomputed without the key" in result.message
    with store.begin() as conn:  # nulling the key's fingerprint as well: still not trusted
        conn.execute(update(audit_head).values(key_fingerprint=None))
    again = verify_audit(store)
    assert (again.ok, again.problem) == (False, "unkeyed")
    assert "rewritten without the key" in again.message


def test_a_keyed_entry_written_on_top_of_a_recomputed_chain_still_names_it_from_entry_1(
    store: Store,
) -> None:
    """The old README's attack, then FinFlow keeps writing (the head's fingerprint is still
    right, so the next entry is keyed): the whole part before it is named, not that entry."""
    append_n(store, 4)
    with store.begin() as conn:
        drop_guards(conn)
        rechain_without_the_key(conn, lambda row: row.update(actor="mallory")
                                if row["seq"] == 2 else None)
    append_n(store, 1)
    result = verify_audit(store)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "changed", 1)
    assert "entries 1 to 4 carry hashes recomputed without the installation key" in result.message
    assert "entry 5 is the first keyed one" in result.message


def legacy_chain(store: Store, n: int) -> None:
    """Entries as an older FinFlow wrote them: plain SHA-256, no key, no fingerprint."""
    prev = ZERO
    with store.begin() as conn:
        for seq in range(1, n + 1):
            fields = {"seq": seq, "at": f"2025-01-0{seq}T00:00:00.000000+00:00", "actor": "old",
                      "action": "edit", "subject_type": "case", "subject_id": f"L{seq}",
                      "model_version": None, "details": canonical_json({"i": seq})}
            digest = entry_hash(prev, fields)
            conn.execute(insert(audit_log).values(**fields, prev_hash=prev, hash=digest))
            prev = digest
        conn.execute(update(audit_head).values(seq=n, hash=prev, key_fingerprint=None))


def test_an_unkeyed_chain_is_not_trusted_then_continued_keyed_with_a_record(store: Store) -> None:
    legacy_chain(store, 3)
    before = verify_audit(store)
    assert (before.ok, before.problem) == (False, "unkeyed")
    append_n(store, 2)
    trail = audit_rows(store)
    assert [e["action"] for e in trail] == ["edit", "edit", "edit", "chain_keyed", "edit", "edit"]
    rekey = trail[3]
    assert rekey["details"]["legacy_entries"] == 3
    assert rekey["details"]["key_fingerprint"] == KEY.fingerprint
    after = verify_audit(store)
    assert (after.ok, after.keyed_from, after.legacy_entries, after.entries) == (True, 4, 3, 6)
    assert "3 written before the chain was keyed at entry 4" in after.message

    def older(row: dict[str, Any]) -> None:  # rewriting the unkeyed part is seen from the keyed one
        if row["seq"] == 2:
            row["actor"] = "mallory"

    with store.begin() as conn:
        drop_guards(conn)
        prev = ZERO
        for row in conn.execute(select(audit_log).where(audit_log.c.seq <= 3)
                                .order_by(audit_log.c.seq)).mappings().all():
            forged = dict(row)
            older(forged)
            forged["prev_hash"], forged["hash"] = prev, entry_hash(prev, forged)
            conn.execute(update(audit_log).where(audit_log.c.seq == row["seq"]).values(**forged))
            prev = forged["hash"]
    tampered = verify_audit(store)
    assert (tampered.ok, tampered.problem, tampered.first_bad_seq) == (False, "changed", 3)


def test_another_key_is_named_at_the_first_write_and_by_verify(store: Store) -> None:
    append_n(store, 2)
    other = InstallationKey(b"the-wrong-key-file-0123456789abc", "/elsewhere/installation.key")
    bind_key(store, other)
    with pytest.raises(AuditChainError, match=f"keyed with key {KEY.fingerprint}.*"
                       f"{other.fingerprint}") as caught:
        append_n(store, 1)
    assert caught.value.exit_code == 12
    result = verify_audit(store)
    assert (result.ok, result.problem) == (False, "wrong_key")
    assert "/elsewhere/installation.key" in result.message
    bind_key(store, KEY)
    assert verify_audit(store).ok and verify_audit(store).entries == 2
