"""The store foundation: SQLite settings, transactions, migrations (both backends)."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from finflow_core.lending.config import load_config
from finflow_core.security.passwords import hash_password
from finflow_core.services.context import Context
from finflow_core.services.sessions import Gate
from finflow_core.store import SchemaVersionError, Store, normalise_url, open_store
from finflow_core.store import engine as store_engine
from finflow_core.store.audit_chain import append_audit, verify_audit
from finflow_core.store.faults import StoreBusy
from finflow_core.store.migrate import (
    MIGRATIONS_DIR,
    head_revision,
    load_all_tables,
    upgrade_to_head,
)
from finflow_core.store.tables import audit_head, users


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


def test_sqlite_connections_get_wal_foreign_keys_busy_timeout_and_normal_sync(
    sqlite_store: Store,
) -> None:
    with sqlite_store.connect() as conn:
        def pragma(name: str) -> object:
            return conn.exec_driver_sql(f"PRAGMA {name}").scalar()

        assert pragma("journal_mode") == "wal"
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") == 30000
        assert pragma("synchronous") == 1  # NORMAL


def test_a_batch_loads_transactions_get_a_large_cache_and_rare_checkpoints_and_others_do_not(
    sqlite_store: Store,
) -> None:
    """A load's connection keeps its indexes' pages cached and checkpoints its WAL every
    10,000 pages; the next ordinary writer on that pooled connection gets SQLite's defaults."""
    from finflow_core.store import engine as store_engine

    def settings(conn) -> tuple[int, int]:  # type: ignore[no-untyped-def]
        return (int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one()),
                int(conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()))

    with sqlite_store.begin(bulk=True) as conn:
        bulk = settings(conn)
    with sqlite_store.begin() as conn:
        plain = settings(conn)
    assert bulk == (-store_engine.BULK_CACHE_KIB, store_engine.BULK_AUTOCHECKPOINT_PAGES)
    assert plain == (-store_engine.DEFAULT_CACHE_KIB, store_engine.DEFAULT_AUTOCHECKPOINT_PAGES)
    assert bulk != plain


def test_open_store_creates_the_folder_and_migrates_to_head(tmp_path: Path) -> None:
    db = tmp_path / "not" / "yet" / "there" / "finflow.db"
    with open_store(f"sqlite:///{db}") as store:
        assert db.is_file()
        assert store.revision() == head_revision()
        with store.connect() as conn:  # the foundation is in the applied history
            assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 0
        with store.connect() as conn:
            assert conn.execute(select(audit_head.c.seq, audit_head.c.hash)).one() == (0, "0" * 64)


def test_write_transaction_takes_the_write_lock_at_begin(tmp_path: Path) -> None:
    path = tmp_path / "finflow.db"
    with open_store(f"sqlite:///{path}") as store, store.begin():
        other = sqlite3.connect(path, timeout=0.05, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()


def test_a_writer_gives_up_after_one_busy_timeout_not_two(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The documented wait is the whole wait: SQLite's busy handler plus FinFlow's polling
    each waited the timeout once (30 s became about 60 s before exit 14)."""
    monkeypatch.setattr(store_engine, "SQLITE_BUSY_TIMEOUT_MS", 1_000)
    path = tmp_path / "finflow.db"
    with open_store(f"sqlite:///{path}") as store:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            with pytest.raises(StoreBusy, match="more than 1 s"), store.begin():
                pass
            waited = time.monotonic() - started
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert 1.0 <= waited < 1.6
        with store.connect() as conn:  # the connection's own busy timeout is back
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 1_000
        with store.begin() as conn:  # and the lock is taken at once when free
            conn.execute(text("UPDATE audit_head SET seq = seq"))


def test_read_then_write_transactions_serialise_without_lost_updates(sqlite_store: Store) -> None:
    with sqlite_store.begin() as conn:
        conn.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
        conn.execute(text("INSERT INTO counter VALUES (1, 0)"))
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(5):
                with sqlite_store.begin() as conn:
                    n = conn.execute(text("SELECT n FROM counter")).scalar_one()
                    time.sleep(0.002)  # widen the window a deferred BEGIN would lose in
                    conn.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with sqlite_store.connect() as conn:
        assert conn.execute(text("SELECT n FROM counter")).scalar_one() == 30


def test_readers_are_not_blocked_by_a_writer(sqlite_store: Store) -> None:
    with sqlite_store.begin() as writer:
        writer.execute(text("UPDATE audit_head SET seq = 99"))
        started = time.monotonic()
        with sqlite_store.connect() as reader:
            assert reader.execute(select(audit_head.c.seq)).scalar_one() == 0
        assert time.monotonic() - started < 1.0


def test_read_connections_cannot_write_and_do_not_poison_the_pool(store: Store) -> None:
    with store.connect() as conn, pytest.raises(DBAPIError):
        conn.execute(text("UPDATE audit_head SET seq = 5"))
    for _ in range(3):  # pooled connections are reused: writes must work again
        with store.begin() as conn:
            conn.execute(text("UPDATE audit_head SET seq = seq"))
    with store.begin() as conn:
        append_audit(conn, "tester", "poke", "test", "1")
    assert verify_audit(store).ok


def test_migrated_schema_matches_the_tables_module(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, load_all_tables()) == []


def test_opening_again_changes_nothing(store_url: str) -> None:
    with open_store(store_url) as first, first.begin() as conn:
        append_audit(conn, "tester", "poke", "test", "1")
    with open_store(store_url) as second:
        assert second.revision() == head_revision()
        result = verify_audit(second)
        assert (result.ok, result.entries) == (True, 1)


def test_concurrent_first_opens_migrate_once(store_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        try:
            barrier.wait()
            open_store(store_url).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with open_store(store_url, upgrade=False) as store, store.connect() as conn:
        assert store.revision() == head_revision()
        assert conn.execute(select(func.count()).select_from(audit_head)).scalar_one() == 1


def test_a_database_from_before_migrations_is_adopted_keeping_its_rows(store_url: str) -> None:
    """A revision-less database (e.g. from a prototype) keeps its users and other tables."""
    password = "an old but long password"
    with open_store(store_url, upgrade=False) as raw, raw.begin() as conn:
        conn.execute(text(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, username VARCHAR(64) NOT NULL UNIQUE, "
            "password_hash VARCHAR(255) NOT NULL, roles VARCHAR(200) NOT NULL, "
            "active BOOLEAN NOT NULL, created_at VARCHAR(32) NOT NULL)"
        ))
        conn.execute(
            text("INSERT INTO users (id, username, password_hash, roles, active, created_at) "
                 "VALUES (1, 'olduser', :h, 'admin', TRUE, '2024-01-01T00:00:00.000000+00:00')"),
            {"h": hash_password(password)},
        )
        conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
        conn.execute(text("INSERT INTO notes VALUES (1, 'keep me')"))
    with open_store(store_url) as store:
        assert store.revision() == head_revision()
        with store.connect() as conn:
            row = conn.execute(select(users)).one()
            assert (row.username, row.failed_logins, row.locked_until) == ("olduser", 0, None)
            assert conn.execute(text("SELECT body FROM notes")).scalar_one() == "keep me"
        assert Gate(Context(load_config(), store)).authenticate("olduser", password).roles == frozenset({"admin"})


def test_an_older_revision_is_upgraded_keeping_its_rows(store_url: str, tmp_path: Path) -> None:
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "9000_test_extra.py").write_text(
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        f"revision = '9000_test_extra'\ndown_revision = {head_revision()!r}\n"
        "branch_labels = None\ndepends_on = None\n\n\n"
        "def upgrade() -> None:\n"
        "    op.add_column('users', sa.Column('nickname', sa.String(40), nullable=True))\n"
        "    op.create_table('extra', sa.Column('id', sa.Integer, primary_key=True))\n"
    )
    with open_store(store_url) as store:  # at today's head
        with store.begin() as conn:
            conn.execute(users.insert().values(
                username="keeper", password_hash="x", roles="analyst", active=True,
                created_at="2024-01-01T00:00:00.000000+00:00",
            ))
            append_audit(conn, "tester", "user_created", "user", "keeper")
        assert upgrade_to_head(store.engine, script_location=scripts) == "9000_test_extra"
        assert store.revision() == "9000_test_extra"
        with store.connect() as conn:
            row = conn.execute(text("SELECT username, nickname FROM users")).one()
            assert tuple(row) == ("keeper", None)
            assert conn.execute(text("SELECT count(*) FROM extra")).scalar_one() == 0
        assert verify_audit(store).ok


def test_a_database_from_a_newer_finflow_is_refused_untouched(store_url: str) -> None:
    with open_store(store_url) as store, store.begin() as conn:
        append_audit(conn, "tester", "poke", "test", "1")
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(SchemaVersionError, match="9999_future") as caught:
        open_store(store_url)
    assert caught.value.details["revision"] == "9999_future"
    with open_store(store_url, upgrade=False) as store:
        assert store.revision() == "9999_future"
        assert verify_audit(store).entries == 1


def test_postgres_urls_without_a_driver_use_psycopg() -> None:
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("sqlite:////tmp/x.db").drivername == "sqlite"


def test_store_repr_masks_the_password() -> None:
    store = Store(__import__("sqlalchemy").create_engine("postgresql+psycopg://u:s3cret@h/db"))
    assert "s3cret" not in repr(store) and "s3cret" not in store.url
