"""Migrations: a fresh database reaches head; an older one is upgraded keeping its rows; the
lending schema's guards hold on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from store_helpers import (
    LENDING_TABLES,
    PASSWORD,
    BatchFiles,
    Lending,
    make_lending,
)
from trail import audit_rows

from finflow_core.security.passwords import hash_password
from finflow_core.services.access import SYSTEM, Principal
from finflow_core.store import Store, make_engine, open_store
from finflow_core.store.audit_chain import canonical_json, entry_hash, verify_audit
from finflow_core.store.batch_queries import find_by_sha
from finflow_core.store.decision_check import verify_decisions
from finflow_core.store.lending_tables import applications, batches, decisions, model_versions
from finflow_core.store.migrate import (
    MIGRATIONS_DIR,
    alembic_config,
    head_revision,
    load_all_tables,
)
from finflow_core.store.tables import GENESIS_HASH, audit_head, audit_log, users

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures

ALL_LENDING = (*LENDING_TABLES, "model_versions", "strategies", "claims")
#: What each backend says when a given guard refuses a row (so a test's IntegrityError is
#: the guard it is about, not some other constraint the row happens to break).
FIRST_DECISION = r"decisions\.application_id|uq_decisions_first_per_application"
ONE_SUCCESSOR = r"decisions\.supersedes_id|decisions_supersedes_id"
ONE_CHAMPION = r"model_versions\.status|uq_model_versions_one_champion"
FOREIGN_KEY = r"(?i)foreign key constraint"
#: The users columns of 0001 (later migrations add columns such as lending_limit).


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    yield s
    s.close()


def test_a_fresh_database_reaches_head_with_every_lending_table(store: Store) -> None:
    versions = sorted(p.stem for p in MIGRATIONS_DIR.joinpath("versions").glob("0*.py"))
    assert head_revision() == versions[-1]  # one chain, newest last
    assert store.revision() == head_revision()
    names = set(inspect(store.engine).get_table_names())
    assert set(ALL_LENDING) <= names
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, load_all_tables()) == []


def test_the_partial_unique_indexes_are_those_of_the_tables_module(store: Store) -> None:
    """compare_metadata ignores an index's WHERE clause: check the ones that carry rules."""
    indexes = {(t, i["name"]): i for t in ("decisions", "model_versions")
               for i in inspect(store.engine).get_indexes(t)}
    for table, name in (("decisions", "uq_decisions_first_per_application"),
                        ("model_versions", "uq_model_versions_one_champion")):
        assert indexes[(table, name)]["unique"]
        dialect_options = indexes[(table, name)].get("dialect_options", {})
        if store.dialect == "postgresql":
            assert "postgresql_where" in dialect_options
    with store.connect() as conn:
        if store.dialect == "sqlite":
            sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = "
                                    "'uq_decisions_first_per_application'")).scalar_one()
        else:
            sql = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = "
                                    "'uq_decisions_first_per_application'")).scalar_one()
    assert "supersedes_id IS NULL" in sql


def test_the_checks_on_stored_rows_are_chains_of_equals_and_still_refuse_unknown_values(
    store: Store,
) -> None:
    """SQLite checks ``x IN (3+ values)`` through a temporary table per inserted row;
    migration 0009 states those checks as ``x = 'a' OR ...`` with the same meaning."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "cheap_checks", MIGRATIONS_DIR / "versions" / "0009_cheap_checks.py")
    assert spec is not None and spec.loader is not None
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)

    with store.connect() as conn:
        for table, name, column, values in m.CHECKS:
            if store.dialect == "sqlite":
                sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE type = 'table' "
                                        "AND name = :t"), {"t": table}).scalar_one()
            else:
                sql = conn.execute(text("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                                        "WHERE conname = :n"), {"n": name}).scalar_one()
            assert m.as_list(column, values) not in sql, name
            for v in values:
                assert f"'{v}'" in sql, (name, v)
    with pytest.raises(Exception, match="(?i)check"), store.begin() as conn:
        conn.execute(text("INSERT INTO decisions (id, application_id, outcome, kind, decided_by, "
                          "decided_at) VALUES (1, 1, 'maybe', 'manual', 'x', 'now')"))


def test_an_older_database_at_0001_is_upgraded_keeping_users_and_audit(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config_path: Path,
    trained_model, batches_dir: BatchFiles,  # noqa: ANN001
) -> None:
    engine = make_engine(store_url)
    try:
        with engine.begin() as conn:  # a database written by the FinFlow that shipped 0001 only
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001_foundation")
        old = Store(engine)
        assert old.revision() == "0001_foundation"
        assert "batches" not in inspect(engine).get_table_names()
        write_as_finflow_0001(old)  # its users and its (unkeyed) audit chain, as it wrote them
        trail_before = audit_rows(old)
        with old.connect() as conn:
            users_before = conn.execute(select(*OLD_USER_COLUMNS).order_by(users.c.id)).all()
    finally:
        engine.dispose()

    lending = make_lending(monkeypatch, tmp_path / "home", config_path, store_url, trained_model)
    try:  # open_store upgraded it on the way (make_lending opens it)
        store = lending.store
        assert store.revision() == head_revision()
        with store.connect() as conn:
            assert conn.execute(select(*OLD_USER_COLUMNS).order_by(users.c.id)).all() == users_before
        assert audit_rows(store)[: len(trail_before)] == trail_before
        assert verify_audit(store).ok
        assert lending.gate.authenticate("ada.admin", PASSWORD).roles == frozenset({"admin"})
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, load_all_tables()) == []
        # the upgraded database works as a new one: a batch, a decision, the guards
        analyst = lending.gate.authenticate("ann.analyst", PASSWORD)
        summary = lending.run(batches_dir.a, actor=analyst)
        lending.wb(Principal(None, "oscar", frozenset({"officer"}))).review.decide(
            lending.pending_ids()[0], "approve")
        with pytest.raises(DBAPIError, match="append-only"), store.begin() as conn:
            conn.execute(update(decisions).values(outcome="decline"))
        assert lending.stored_rows(summary.batch_id) == BatchFiles.records(batches_dir.a)
        assert verify_audit(store).ok and verify_decisions(store).ok
    finally:
        lending.close()


OLD_USER_COLUMNS = [users.c[c] for c in ("id", "username", "password_hash", "roles", "active",
                                          "created_at", "failed_logins", "locked_until")]


def write_as_finflow_0001(store: Store) -> None:
    """Two users and four audit entries the way the FinFlow of revision 0001 wrote them: no
    seals, and a chain hashed with plain SHA-256 (no key)."""
    at = "2025-11-28T10:00:0{}.000000+00:00"
    with store.begin() as conn:
        for i, (name, roles) in enumerate((("ada.admin", "admin"), ("ann.analyst", "analyst"))):
            conn.execute(insert(users).values(
                username=name, password_hash=hash_password(PASSWORD), roles=roles, active=True,
                created_at=at.format(i), created_by="system", password_changed_at=at.format(i)))
        prev = GENESIS_HASH
        entries = [("system", "user_created", "user", "ada.admin", {"roles": ["admin"]}),
                   ("ada.admin", "user_created", "user", "ann.analyst", {"roles": ["analyst"]}),
                   ("ann.analyst", "login", "user", "ann.analyst", {}),
                   ("ada.admin", "note", "test", "1", {"text": "before the upgrade"})]
        for seq, (actor, action, subject_type, subject_id, details) in enumerate(entries, 1):
            fields = {"seq": seq, "at": at.format(seq + 2), "actor": actor, "action": action,
                      "subject_type": subject_type, "subject_id": subject_id, "model_version": None,
                      "details": canonical_json(details)}
            digest = entry_hash(prev, fields)  # no key: the formula of that FinFlow
            conn.execute(insert(audit_log).values(**fields, prev_hash=prev, hash=digest))
            prev = digest
        conn.execute(update(audit_head).values(seq=len(entries), hash=prev))


def test_reopening_a_current_database_changes_nothing(ff_sqlite: Lending, batches_dir: BatchFiles) -> None:
    ff = ff_sqlite
    ff.run(batches_dir.a)
    before = ff.counts()
    with open_store(ff.url) as again:
        assert again.revision() == head_revision()
    assert ff.counts() == before


# -- the schema's own guards (they hold whatever the code does) ----------------------------------

def test_one_first_decision_per_application_and_one_successor_per_decision(
    ff: Lending, batches_dir: BatchFiles
) -> None:
    ff.run(batches_dir.a)
    case = ff.pending_ids()[0]
    first = ff.wb(Principal(None, "olga", frozenset({"officer"}))).review.decide(case, "approve")
    base = {"application_id": case, "outcome": "decline", "kind": "manual", "decided_by": "mallory",
            "reason": "r", "note": "", "decided_at": "2026-01-01T00:00:00.000000+00:00"}
    with pytest.raises(IntegrityError, match=FIRST_DECISION), ff.store.begin() as conn:
        conn.execute(insert(decisions).values(**base, supersedes_id=None))
    with ff.store.begin() as conn:
        second = conn.execute(insert(decisions).values(**base, supersedes_id=first.id)
                              .returning(decisions.c.id)).scalar_one()
    with pytest.raises(IntegrityError, match=ONE_SUCCESSOR), ff.store.begin() as conn:
        conn.execute(insert(decisions).values(**base, supersedes_id=first.id))
    assert second != first.id


def test_only_one_champion_and_batches_must_add_up(ff: Lending) -> None:
    with pytest.raises(IntegrityError, match=ONE_CHAMPION), ff.store.begin() as conn:
        conn.execute(insert(model_versions).values(
            version="other", model_name="x", status="champion", artifact_sha256="0" * 64,
            training_data_sha256="0" * 64, rows=1, folder="/nowhere", card="{}",
            created_at="2026-01-01T00:00:00.000000+00:00", trained_by="x"))
    row = {"id": "B-x", "sha256": "f" * 64, "file_name": "f.csv", "uploaded_by": "x",
           "uploaded_at": "2026-01-01T00:00:00.000000+00:00", "model_version": ff.version,
           "low_edge": 0.1, "high_edge": 0.2, "week_start": "2026-01-05", "rows_in": 10,
           "rows_valid": 9, "rows_quarantined": 2, "n_low": 0, "n_medium": 0, "n_high": 0,
           "automation_rate": 0.0, "expected_profit": 0.0, "drift_status": "stable", "summary": "{}"}
    with pytest.raises(IntegrityError, match="rows_add_up"), ff.store.begin() as conn:
        conn.execute(insert(batches).values(**row))
    with ff.store.connect() as conn:
        assert conn.execute(select(applications.c.id)).first() is None


def test_stores_refuse_a_batch_whose_model_is_not_registered(ff: Lending) -> None:
    """Foreign keys are enforced on both backends (SQLite needs PRAGMA foreign_keys)."""
    with pytest.raises(IntegrityError, match=FOREIGN_KEY), ff.store.begin() as conn:
        conn.execute(insert(batches).values(
            id="B-y", sha256="e" * 64, file_name="f.csv", uploaded_by="x",
            uploaded_at="2026-01-01T00:00:00.000000+00:00", model_version="not-registered",
            low_edge=0.1, high_edge=0.2, week_start="2026-01-05", rows_in=0, rows_valid=0,
            rows_quarantined=0, n_low=0, n_medium=0, n_high=0, automation_rate=0.0,
            expected_profit=0.0, drift_status="stable", summary="{}"))
    assert SYSTEM.has_role("analyst") and find_by_sha(ff.store, "e" * 64) is None
