"""Backups and restores, and a home that is copied or restored elsewhere loading its own models."""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest
from sqlalchemy import select
from store_helpers import PASSWORD, SECRET_KEY, BatchFiles, Lending

from finflow_core.cli import main
from finflow_core.store.lending_tables import model_versions

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out, out.err


@pytest.fixture
def admin(ffa_sqlite: Lending, monkeypatch: pytest.MonkeyPatch) -> Lending:
    ffa_sqlite.users()
    monkeypatch.setenv("FINFLOW_USER", "ada.admin")
    monkeypatch.setenv("FINFLOW_PASSWORD", PASSWORD)
    return ffa_sqlite


def test_backup_then_restore_over_a_damaged_store_and_verify(
    admin: Lending, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backup = tmp_path / "backups" / "finflow-2026-12-02.db"
    backup.parent.mkdir()
    code, out, err = run(capsys, "backup", "--out", backup, "--json")
    assert code == 0, err
    made = json.loads(out)
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600 and made["bytes"] == backup.stat().st_size
    with sqlite3.connect(backup) as copy:
        assert copy.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        assert copy.execute("SELECT count(*) FROM batches").fetchone()[0] == 1
    copy.close()
    assert run(capsys, "backup", "--out", backup)[0] == 2  # never overwritten silently
    monkeypatch.setenv("FINFLOW_USER", "ann.analyst")
    assert run(capsys, "backup", "--out", tmp_path / "other.db")[0] == 8  # admins only

    # a store with data is not replaced without --force
    code, _, err = run(capsys, "restore", "--from", backup)
    assert code == 10 and "--force" in err
    # the database is destroyed; restore brings it back and verifies the trail
    admin.close()
    db = Path(admin.url.removeprefix("sqlite:///"))
    db.write_bytes(b"garbage" * 1000)
    for side in ("-wal", "-shm"):
        Path(f"{db}{side}").unlink(missing_ok=True)
    monkeypatch.setenv("FINFLOW_USER", "ada.admin")
    assert run(capsys, "batches", "list")[0] == 17
    monkeypatch.delenv("FINFLOW_USER")  # restoring needs no sign-in (the store may be unusable)
    code, out, err = run(capsys, "restore", "--from", backup, "--force", "--json")
    assert code == 0, err
    restored = json.loads(out)
    assert restored["ok"] and "intact" in restored["chain"] and restored["replaced_data"]
    assert list(db.parent.glob("finflow.db.damaged-*"))  # the damaged file is kept aside
    monkeypatch.setenv("FINFLOW_USER", "ada.admin")
    code, out, _ = run(capsys, "audit", "verify", "--json")
    assert code == 0 and json.loads(out)["ok"]
    code, out, _ = run(capsys, "audit", "export", "--out", tmp_path / "trail.csv")
    trail = (tmp_path / "trail.csv").read_text()
    # the restored trail ends with the restore; the backup entry came after the snapshot
    actions = [line.split(",")[3] for line in trail.strip().splitlines()[1:]]
    assert "store_restored" in actions and "store_backed_up" not in actions


def test_a_backup_to_a_full_disk_names_the_backup_not_the_database(
    admin: Lending, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SQLite's "database or disk is full" while writing the copy was reported as "the disk
    holding the database is full ... move the data folder": the backup's disk is."""
    connect = sqlite3.connect

    def small_disk(path: object, *args: object, **kwargs: object) -> sqlite3.Connection:
        conn = connect(path, *args, **kwargs)  # type: ignore[arg-type]
        if str(path).endswith(".tmp"):  # the copy being written: room for 2 pages
            conn.execute("PRAGMA max_page_count = 2")
        return conn

    monkeypatch.setattr(sqlite3, "connect", small_disk)
    folder = tmp_path / "small"
    folder.mkdir()
    code, _, err = run(capsys, "backup", "--out", folder / "b.db")
    assert code == 15, err
    assert f"the disk holding the backup {folder / 'b.db'} is full" in err
    assert "database" not in err.split("is full")[0]
    assert list(folder.iterdir()) == []  # nothing left behind
    assert admin.count("audit_log", "WHERE action = 'store_backed_up'") == 0


def test_restore_refuses_a_file_that_is_not_a_backup(
    admin: Lending, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    fake = tmp_path / "fake.db"
    fake.write_text("hello")
    code, _, err = run(capsys, "restore", "--from", fake, "--force")
    assert code == 17 and "not a SQLite database" in err and "no usable backup" in err
    backup = tmp_path / "good.db"
    assert run(capsys, "backup", "--out", backup)[0] == 0
    cut = tmp_path / "cut.db"
    cut.write_bytes(backup.read_bytes()[:8192])  # a copy that stopped half-way
    code, _, err = run(capsys, "restore", "--from", cut, "--force")
    assert code == 17 and f"--from {cut} is truncated: it is no usable backup" in err
    assert "restore it with" not in err  # the advice for a damaged store, not for a backup
    assert run(capsys, "restore", "--from", tmp_path / "none.db")[0] == 2


@pytest.mark.parametrize("revision", ["0001", "head", "zzz"])
def test_restore_refuses_a_file_that_only_claims_a_schema_before_replacing_anything(
    admin: Lending, capsys: pytest.CaptureFixture[str], tmp_path: Path, revision: str,
) -> None:
    """A SQLite file with just an ``alembic_version`` row was copied over the store, then
    failed to migrate (exit 1 or 13): the store's data was gone. Now it is refused first."""
    from finflow_core.store.migrate import head_revision

    fake = tmp_path / "claims.db"
    with sqlite3.connect(fake) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES (?)",
                     (head_revision() if revision == "head" else revision,))
    conn.close()
    before = admin.counts()
    admin.close()
    code, _, err = run(capsys, "restore", "--from", fake, "--force")
    assert code == (13 if revision == "zzz" else 17), err
    assert "Nothing was changed" in err or "nothing was changed" in err
    assert admin.counts() == before
    assert not any(p.name.startswith(".restore-check") for p in db_folder(admin).iterdir())


def db_folder(ff: Lending) -> Path:
    return Path(ff.url.removeprefix("sqlite:///")).parent


@pytest.mark.postgres
def test_postgres_backups_point_to_pg_dump(ff_pg: Lending, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ff_pg.users()
    monkeypatch.setenv("FINFLOW_USER", "ada.admin")
    monkeypatch.setenv("FINFLOW_PASSWORD", PASSWORD)
    code, _, err = run(capsys, "backup", "--out", tmp_path / "x.db")
    assert code == 18 and "pg_dump --format=custom" in err and "postgresql://" in err
    code, _, err = run(capsys, "restore", "--from", tmp_path / "x.db")
    assert code == 18 and "pg_restore" in err


def test_a_copied_home_loads_its_own_models(
    ff_sqlite: Lending, batches_dir: BatchFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Model folders are registered relative to models_dir: a home moved elsewhere (the old
    one gone) scores with the models it carries."""
    from finflow_core.lending.model.bundle import ModelBundle
    from finflow_core.services.access import SYSTEM
    from finflow_core.services.workbench import Workbench
    from finflow_core.store import open_store
    from finflow_core.store.model_files import load_bundle
    from finflow_core.store.registry import model_folder

    old_home = tmp_path / "old_home"
    (old_home / "models").mkdir(parents=True)
    shutil.copytree(ff_sqlite.model.folder, old_home / "models" / ff_sqlite.version)
    monkeypatch.setenv("FINFLOW_HOME", str(old_home))
    monkeypatch.setenv("FINFLOW_DATABASE_URL", f"sqlite:///{old_home / 'data' / 'finflow.db'}")
    from finflow_core.lending.config import load_config
    from finflow_core.services.context import Context

    config = load_config()
    with open_store(config.paths.database_url) as store:
        bundle: ModelBundle = load_bundle(old_home / "models" / ff_sqlite.version, SECRET_KEY.encode())
        Workbench(Context(config, store), SYSTEM).models.register(
            bundle, old_home / "models" / ff_sqlite.version)
        with store.connect() as conn:
            assert conn.execute(select(model_versions.c.folder)).scalar_one() == ff_sqlite.version
    new_home = tmp_path / "new_home"
    shutil.move(old_home, new_home)
    monkeypatch.setenv("FINFLOW_HOME", str(new_home))
    monkeypatch.setenv("FINFLOW_DATABASE_URL", f"sqlite:///{new_home / 'data' / 'finflow.db'}")
    config = load_config()
    with open_store(config.paths.database_url) as store:
        summary = Workbench(Context(config, store), SYSTEM).batches.run(batches_dir.a)
    assert summary.rows_valid > 0
    # an old absolute row whose place is gone is found under this home's models folder by name
    gone = str(tmp_path / "elsewhere" / "models" / ff_sqlite.version)
    assert model_folder(gone, config.paths.models_dir) == config.paths.models_dir / ff_sqlite.version
    assert model_folder("v1", Path("/m")) == Path("/m/v1")
