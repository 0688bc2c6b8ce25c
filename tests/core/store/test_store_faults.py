"""Clear failures: each fault of the database file or its folders is one message and a
documented exit code, never a traceback (SQLite, through the ``finflow`` command)."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from store_helpers import PASSWORD, BatchFiles, Lending

from finflow_core.cli import main
from finflow_core.store import engine as store_engine
from finflow_core.store.faults import StoreDamaged, translate

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out, out.err


def db_path(ff: Lending) -> Path:
    return Path(ff.url.removeprefix("sqlite:///"))


@pytest.fixture
def analyst(ff_sqlite: Lending, monkeypatch: pytest.MonkeyPatch) -> Lending:
    ff_sqlite.users()
    monkeypatch.setenv("FINFLOW_USER", "ann.analyst")
    monkeypatch.setenv("FINFLOW_PASSWORD", PASSWORD)
    return ff_sqlite


def _can_mount() -> bool:
    return os.geteuid() == 0 and subprocess.run(["which", "mount"], capture_output=True).returncode == 0


@contextmanager
def tmpfs(where: Path, size_kb: int) -> Iterator[Path]:
    """A small RAM file system at ``where`` (root only): a disk that can be full or read-only."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _read_only(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs root to mount a tmpfs")


# -- files and folders ------------------------------------------------------------------------------

def test_a_new_database_is_0600_in_a_0700_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str],
                                                 ff_sqlite: Lending) -> None:
    home = tmp_path / "new_home"
    monkeypatch.setenv("FINFLOW_HOME", str(home))
    monkeypatch.setenv("FINFLOW_DATABASE_URL", f"sqlite:///{home / 'data' / 'finflow.db'}")
    monkeypatch.setenv("FINFLOW_NEW_PASSWORD", PASSWORD)
    monkeypatch.setattr(os, "umask", os.umask)  # keep the test's umask for others
    old = os.umask(0o022)
    try:
        code, _, err = run(capsys, "users", "add", "ada.admin", "--role", "admin")
    finally:
        os.umask(old)
    assert code == 0, err
    db = home / "data" / "finflow.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    for side in (Path(f"{db}-wal"), Path(f"{db}-shm")):
        if side.exists():
            assert stat.S_IMODE(side.stat().st_mode) & 0o077 == 0


@needs_mount
def test_a_read_only_data_folder_is_exit_16(analyst: Lending, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str],
                                            batches_dir: BatchFiles) -> None:
    analyst.close()
    with tmpfs(tmp_path / "ro", 65536) as ro:
        db = ro / "finflow.db"
        db.write_bytes(db_path(analyst).read_bytes())
        _read_only(ro)
        monkeypatch.setenv("FINFLOW_DATABASE_URL", f"sqlite:///{db}")
        code, _, err = run(capsys, "weekly-run", "--data", batches_dir.a)
        assert code == 16, err
        assert "cannot be written" in err and "read-only" in err
        # a fresh home on a read-only disk: the data folder cannot even be made
        monkeypatch.setenv("FINFLOW_HOME", str(ro / "home"))
        monkeypatch.setenv("FINFLOW_DATABASE_URL", f"sqlite:///{ro / 'home' / 'data' / 'x.db'}")
        code, _, err = run(capsys, "batches", "list")
        assert code == 16 and "cannot create the data folder" in err


@needs_mount
def test_a_full_disk_is_exit_15_and_leaves_nothing_visible(
    analyst: Lending, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], batches_dir: BatchFiles,
) -> None:
    """A real full disk: the database on a tmpfs with a little room left."""
    analyst.close()
    size = db_path(analyst).stat().st_size
    with tmpfs(tmp_path / "small", size // 1024 + 600) as small:
        db = small / "finflow.db"
        db.write_bytes(db_path(analyst).read_bytes())
        monkeypatch.setenv("FINFLOW_DATABASE_URL", f"sqlite:///{db}")
        code, _, err = run(capsys, "weekly-run", "--data", batches_dir.a, "--chunk-rows", 100)
        assert code == 15, err
        assert "full" in err and "nothing of this step was stored" in err
        monkeypatch.setenv("FINFLOW_USER", "mia.manager")
        code, out, _ = run(capsys, "batches", "list")
        assert code in (0, 15) and "week_a" not in out  # never a partial batch


def test_a_file_that_is_not_a_database_is_exit_17(analyst: Lending, capsys: pytest.CaptureFixture[str]) -> None:
    analyst.close()
    db = db_path(analyst)
    db.write_bytes(b"this is not a database, just some text\n" * 100)
    for side in ("-wal", "-shm"):
        Path(f"{db}{side}").unlink(missing_ok=True)
    code, _, err = run(capsys, "batches", "list")
    assert code == 17 and "not a SQLite database" in err


def test_a_truncated_database_is_exit_17(analyst: Lending, capsys: pytest.CaptureFixture[str]) -> None:
    analyst.close()
    db = db_path(analyst)
    assert not Path(f"{db}-wal").exists()  # closed: checkpointed into the file
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    code, _, err = run(capsys, "batches", "list")
    assert code == 17 and "truncated" in err


def test_a_damaged_page_refuses_writes_but_not_reads(analyst: Lending, capsys: pytest.CaptureFixture[str]) -> None:
    with analyst.store.connect() as conn:
        page = conn.execute(text("SELECT rootpage FROM sqlite_master WHERE name = "
                                 "'ix_audit_log_actor'")).scalar_one()
        page_size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
    analyst.close()
    db = db_path(analyst)
    with open(db, "r+b") as fh:
        fh.seek((page - 1) * page_size)
        fh.write(b"\xff" * 64)  # an index page's header: no valid page type
    with sqlite3.connect(db) as check:
        assert check.execute("PRAGMA quick_check").fetchone()[0] != "ok"
    check.close()
    code, _, err = run(capsys, "users", "add", "eve", "--role", "admin")  # a write (sign-in)
    assert code == 17 and "integrity check" in err
    from finflow_core.store import open_store

    with open_store(analyst.url, recover=False) as store, store.connect() as conn:  # reads work
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 4


def test_a_locked_database_is_exit_14_after_the_busy_timeout(
    analyst: Lending, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_engine, "SQLITE_BUSY_TIMEOUT_MS", 300)
    holder = sqlite3.connect(db_path(analyst), isolation_level=None, timeout=1)
    holder.execute("BEGIN IMMEDIATE")
    try:
        code, _, err = run(capsys, "batches", "list")  # signing in writes: it must wait
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 14 and "stayed locked" in err
    assert run(capsys, "batches", "list")[0] == 0  # free again


def test_a_run_locked_out_of_publishing_gives_up_after_one_timeout(
    analyst: Lending, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    batches_dir: BatchFiles,
) -> None:
    """Publishing waited the timeout, then removing the load waited it again (a run told
    "locked for more than 30 s" after a minute). The load is left invisible instead, and
    the next run removes it and stores the file."""
    from finflow_core.store.batch_writer import StoreSink

    monkeypatch.setattr(store_engine, "SQLITE_BUSY_TIMEOUT_MS", 1_000)
    holder = sqlite3.connect(db_path(analyst), isolation_level=None, timeout=5)
    publish = StoreSink.finish
    locked_at: list[float] = []

    def locked_out(sink: StoreSink, *args: object) -> None:
        holder.execute("BEGIN IMMEDIATE")  # another process takes the lock: the chunks are in
        locked_at.append(time.monotonic())
        publish(sink, *args)

    monkeypatch.setattr(StoreSink, "finish", locked_out)
    try:
        code, _, err = run(capsys, "weekly-run", "--data", batches_dir.a, "--chunk-rows", 200)
        waited = time.monotonic() - locked_at[0]
    finally:
        holder.execute("ROLLBACK")
    assert code == 14 and "more than 1 s" in err, err
    assert waited < 1.6
    monkeypatch.setattr(StoreSink, "finish", publish)
    code, out, _ = run(capsys, "batches", "list")
    assert code == 0 and "week_a" not in out  # never a partial batch
    assert run(capsys, "weekly-run", "--data", batches_dir.a)[0] == 0
    code, out, _ = run(capsys, "batches", "list")
    assert out.count("week_a") == 1
    with sqlite3.connect(db_path(analyst)) as conn:
        assert conn.execute("SELECT count(*) FROM batches WHERE state != 'published'").fetchone() == (0,)
    conn.close()
    holder.close()


@pytest.mark.parametrize("state", ["empty", "missing"])
def test_a_lost_database_is_never_taken_for_a_fresh_install(
    ff_sqlite: Lending, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    state: str,
) -> None:
    """Models (and the key) say this installation was used: `users add mallory --role admin`
    with no credentials must not become the first admin of an empty database."""
    models = ff_sqlite.config.paths.models_dir
    models.mkdir(parents=True, exist_ok=True)
    (models / ff_sqlite.version).mkdir(exist_ok=True)
    (models / ff_sqlite.version / "model_card.json").write_text("{}")
    ff_sqlite.close()
    db = db_path(ff_sqlite)
    for side in ("-wal", "-shm"):
        Path(f"{db}{side}").unlink(missing_ok=True)
    if state == "empty":
        db.write_bytes(b"")
    else:
        db.unlink()
    monkeypatch.setenv("FINFLOW_NEW_PASSWORD", PASSWORD)
    for name in ("FINFLOW_USER", "FINFLOW_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = run(capsys, "users", "add", "mallory", "--role", "admin")
    assert code == 17 and "will not start a new, empty database" in err and "restore" in err
    assert (not db.exists()) if state == "missing" else db.stat().st_size == 0


def test_an_anchor_where_anchors_are_kept_now_proves_a_lost_database(
    ff_sqlite: Lending, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The check looked for anchors in the data folder, where they were kept before they
    moved out: with the models elsewhere (another volume, not mounted), a lost database was
    taken for a fresh install and `users add mallory --role admin` made an admin."""
    from finflow_core.store.anchors import anchor_folder

    config = ff_sqlite.config
    ff_sqlite.close()
    models = config.paths.models_dir
    if models.exists():
        models.rename(tmp_path / "models-on-another-volume")
    assert not (config.paths.data_dir / "anchors").exists()
    folder = anchor_folder(config)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*"):
        old.unlink()
    (folder / "anchor-0000000007-2026-12-01T101010Z.json").write_text("{}")
    db = db_path(ff_sqlite)
    for side in ("", "-wal", "-shm"):
        Path(f"{db}{side}").unlink(missing_ok=True)
    monkeypatch.setenv("FINFLOW_NEW_PASSWORD", PASSWORD)
    for name in ("FINFLOW_USER", "FINFLOW_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = run(capsys, "users", "add", "mallory", "--role", "admin")
    assert code == 17 and "will not start a new, empty database" in err, err
    assert "anchor-0000000007" in err and not db.exists()


def test_an_empty_file_is_a_fresh_install_when_nothing_was_used(tmp_path: Path) -> None:
    db = tmp_path / "data" / "finflow.db"
    db.parent.mkdir()
    db.write_bytes(b"")
    store_engine.check_sqlite_file(db)  # nothing says otherwise: fine
    (tmp_path / "data" / ".finflow_secret").write_text("k")
    with pytest.raises(StoreDamaged, match="empty"):
        store_engine.check_sqlite_file(db, [tmp_path / "data" / ".finflow_secret"])


# -- --out ------------------------------------------------------------------------------------------

def test_out_problems_are_found_before_anything_is_stored(
    analyst: Lending, capsys: pytest.CaptureFixture[str], batches_dir: BatchFiles, tmp_path: Path,
) -> None:
    existing = tmp_path / "report.csv"
    existing.write_text("last week")
    before = analyst.count("batches")
    code, _, err = run(capsys, "weekly-run", "--data", batches_dir.a, "--out", existing)
    assert code == 2 and "is an existing file" in err
    assert existing.read_text() == "last week" and analyst.count("batches") == before == 0
    dangling = tmp_path / "reports"  # a link to a folder not made yet: was exit 1 once stored
    dangling.symlink_to(tmp_path / "not" / "there")
    code, _, err = run(capsys, "weekly-run", "--data", batches_dir.a, "--out", dangling / "w49")
    assert code == 2 and "is a symbolic link to" in err and "which does not exist" in err
    assert analyst.count("batches") == 0
    if os.geteuid() != 0:  # root writes anywhere: the read-only mount test covers it
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        code, _, err = run(capsys, "weekly-run", "--data", batches_dir.a, "--out", locked)
        assert code == 16 and analyst.count("batches") == 0


@needs_mount
def test_an_out_folder_on_a_read_only_disk_is_exit_16_before_storing(
    analyst: Lending, capsys: pytest.CaptureFixture[str], batches_dir: BatchFiles, tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "ro_out", 1024) as ro:
        _read_only(ro)
        code, _, err = run(capsys, "weekly-run", "--data", batches_dir.a, "--out", ro / "reports")
        assert code == 16 and "not writable" in err
    assert analyst.count("batches") == 0


def test_reports_are_renamed_into_place_with_the_summary_last(
    analyst: Lending, capsys: pytest.CaptureFixture[str], batches_dir: BatchFiles, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A kill while exporting never leaves a half-written decisions.csv beside an old summary."""
    from finflow_core.store import exports

    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text('{"batch_id": "last week"}')
    (out / "decisions.csv").write_text("last week's decisions\n")
    real = exports.write_csv

    def killed_half_way(frames, path):  # noqa: ANN001, ANN202
        real(frames, path)
        if "quarantine_issues" in path.name:
            raise KeyboardInterrupt  # as if killed in the middle of the export
    monkeypatch.setattr(exports, "write_csv", killed_half_way)
    code, _, _ = run(capsys, "weekly-run", "--data", batches_dir.a, "--out", out)
    assert code == 130
    assert (out / "decisions.csv").read_text() == "last week's decisions\n"  # untouched
    assert (out / "summary.json").read_text() == '{"batch_id": "last week"}'
    assert sorted(p.name for p in out.iterdir()) == ["decisions.csv", "summary.json"]  # no temp files
    monkeypatch.setattr(exports, "write_csv", real)
    monkeypatch.setenv("FINFLOW_USER", "mia.manager")
    [batch_id] = analyst.batch_ids()
    code, _, err = run(capsys, "batches", "export", batch_id, "--out", out)
    assert code == 0, err
    assert "last week" not in (out / "decisions.csv").read_text()


def test_an_unexpected_error_is_one_line_and_exit_1(
    analyst: Lending, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from finflow_core.services import batches as service

    def broken(self, limit=100):  # noqa: ANN001, ANN202
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(service.BatchService, "list", broken)
    monkeypatch.setenv("FINFLOW_USER", "mia.manager")
    code, _, err = run(capsys, "batches", "list")
    assert code == 1 and "unexpected error (ZeroDivisionError: a bug)" in err
    assert len(err.strip().splitlines()) == 1


def test_driver_messages_map_to_their_faults() -> None:
    from sqlalchemy.exc import IntegrityError, OperationalError

    def op(message: str) -> OperationalError:
        return OperationalError("stmt", {}, sqlite3.OperationalError(message))

    assert translate(op("database or disk is full")).exit_code == 15
    assert translate(op("database is locked")).exit_code == 14
    assert translate(op("attempt to write a readonly database")).exit_code == 16
    assert translate(op("file is not a database")).exit_code == 17
    assert translate(op("no such table: x")) is None  # a bug, not a fault: reported as such
    assert translate(IntegrityError("s", {}, sqlite3.IntegrityError("UNIQUE"))) is None
    assert translate(OSError(28, "No space left on device", "out.csv")).exit_code == 15
    # bare, as a writer's BEGIN IMMEDIATE raises it: a read-only -shm file left by a run on a
    # read-only database made every later write "unexpected error", exit 1
    bare = translate(sqlite3.OperationalError("attempt to write a readonly database"))
    assert bare is not None and bare.exit_code == 16 and "-shm" in bare.message
    assert translate(sqlite3.OperationalError("disk I/O error")).exit_code == 15
    assert translate(sqlite3.OperationalError("no such table: x")) is None
