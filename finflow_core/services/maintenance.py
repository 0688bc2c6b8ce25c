"""Keeping an installation's record safe: opening it with its guards, backups and restores.

* :func:`open_installation` opens the store of a config and refuses an empty or missing
  database file where the installation was clearly used before (its signing key, model
  folders or audit anchors exist): a lost database is never silently replaced by a fresh
  one whose first ``users add`` becomes admin.
* :meth:`MaintenanceService.backup` (admin) copies a SQLite store with SQLite's online
  backup API: a consistent snapshot while people keep working, written 0600 to a temporary
  name, integrity-checked, then renamed, and audited. PostgreSQL is backed up with
  ``pg_dump`` (the error says the command line).
* :func:`restore` (an operator on the server: no sign-in, since the store being replaced
  may be unusable) copies a backup *into* the store through the same backup API (safe for
  SQLite's WAL), refuses to replace a store that holds data unless forced, brings the
  schema up to date, runs the audit verification and records the restore in the trail.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from finflow_core.errors import Conflict, InvalidInput
from finflow_core.lending.config import Config
from finflow_core.services.access import Action
from finflow_core.services.base import Service
from finflow_core.services.context import Context
from finflow_core.store import Store, open_store
from finflow_core.store.anchors import FILE_PATTERN as ANCHOR_FILES
from finflow_core.store.anchors import anchor_folder
from finflow_core.store.audit_chain import AuditVerification, append_audit, verify_audit
from finflow_core.store.decision_check import DecisionVerification, verify_decisions
from finflow_core.store.engine import check_sqlite_file, sqlite_path
from finflow_core.store.faults import NotAvailableHere, StoreDamaged, StoreFull, StoreNotWritable
from finflow_core.store.migrate import load_all_tables

KEY_FILE = ".finflow_secret"  # finflow_core.store.model_files.KEY_FILE
ANCHORS = "anchors"  # where audit anchors are kept under the data folder, by default


def prior_use(config: Config) -> list[Path]:
    """Files that prove this installation was used before: anchors (in ``audit.anchor_dir``,
    or the old folder; every used installation has one), model cards, the old key file in
    the data folder. Not the key file where it is kept now: it may be provisioned before the
    first start (from a vault), or serve several stores (a test run)."""
    paths = config.paths
    found = [p for p in (paths.data_dir / KEY_FILE,) if p.is_file()]
    for folder in (anchor_folder(config), paths.data_dir / ANCHORS):
        if folder.is_dir():
            found += sorted(folder.glob(ANCHOR_FILES))[-1:]
    if paths.models_dir.is_dir():
        found += sorted(paths.models_dir.glob("*/model_card.json"))[:3]
    return list(dict.fromkeys(found))


def open_installation(config: Config, *, recover: bool = True) -> Store:
    """The config's store, with the guards of :func:`finflow_core.store.open_store`; the data
    folder is created 0700."""
    data_dir = config.paths.data_dir
    if not data_dir.exists():
        try:
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(data_dir, 0o700)
        except OSError as exc:
            raise StoreNotWritable(f"cannot create the data folder {data_dir} ({exc.strerror}): "
                                   "make FINFLOW_HOME writable or point it elsewhere",
                                   path=str(data_dir)) from None
    return open_store(config.paths.database_url, recover=recover, prior_use=prior_use(config),
                      stale=stale_after(config))


def open_context(config: Config) -> Context:
    """The services context of an installation as the app and the CLI use it: the store opened
    with :func:`open_installation`'s guards, and a changed config file recorded in the audit
    trail (the one way both front ends start)."""
    from finflow_core.store.config_log import record_config

    store = open_installation(config)
    try:
        record_config(store, config)
    except BaseException:
        store.close()
        raise
    return Context(config, store)


def stale_after(config: Config) -> timedelta:
    """When a load from another host with no heartbeat counts as abandoned (config limits)."""
    return timedelta(minutes=config.limits.stale_load_minutes)


# -- backups ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BackupResult:
    path: Path
    bytes: int
    sha256: str
    audit_entries: int
    seconds: float


@dataclass(frozen=True)
class RestoreResult:
    path: Path
    source: Path
    replaced_data: bool
    revision: str
    chain: AuditVerification
    decisions: DecisionVerification

    @property
    def ok(self) -> bool:
        return self.chain.ok and self.decisions.ok

    @property
    def message(self) -> str:
        return f"{self.chain.message}\n{self.decisions.message}"


def pg_advice(url: str, what: str) -> NotAvailableHere:
    u = make_url(url).set(password=None)
    shown = u.set(drivername="postgresql").render_as_string(hide_password=True)
    command = (f'pg_dump --format=custom --file=finflow.dump "{shown}"' if what == "backup" else
               f'pg_restore --clean --if-exists --dbname="{shown}" finflow.dump')
    return NotAvailableHere(
        f"finflow {what} copies SQLite stores only; this store is PostgreSQL: use `{command}` "
        "(then `finflow audit verify`)", command=command)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _check_copy(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        found = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
    conn.close()
    if found != ["ok"]:
        raise StoreDamaged(f"the copy {path} failed its integrity check ({'; '.join(found)}): "
                           "the database itself may be damaged", problems=found)


class MaintenanceService(Service):
    """Admins back the store up (restores are run on the server, see :func:`restore`)."""

    def backup(self, out: Path, *, overwrite: bool = False) -> BackupResult:
        """A consistent copy of the store at ``out`` (0600), checked and audited."""
        self.require(Action.BACKUP_STORE)
        store = self.ctx.store
        if store.dialect != "sqlite":
            raise pg_advice(self.ctx.config.paths.database_url, "backup")
        out = Path(out)
        if out.is_dir():
            raise InvalidInput(f"--out {out} is a folder: name the backup file", field="out")
        if out.exists() and not overwrite:
            raise InvalidInput(f"--out {out} exists already: choose a new name (backups are never "
                               "overwritten silently)", field="out")
        started = time.perf_counter()
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.close(fd)
            target = sqlite3.connect(tmp)
            try:
                with store.engine.connect() as conn:
                    conn.connection.dbapi_connection.backup(target)  # one step: one snapshot
            finally:
                target.close()
            _check_copy(tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, out)
        except OSError as exc:
            raise StoreNotWritable(f"cannot write the backup {out} ({exc.strerror})",
                                   path=str(out)) from None
        except sqlite3.Error as exc:
            raise _backup_fault(out, exc) from None
        finally:
            for suffix in ("", "-journal"):  # SQLite's rollback journal of the copy, too
                Path(f"{tmp}{suffix}").unlink(missing_ok=True)
        digest, size = _sha256(out), out.stat().st_size
        with sqlite3.connect(out) as copy:
            entries = int(copy.execute("SELECT seq FROM audit_head WHERE id = 1").fetchone()[0])
        copy.close()
        with store.begin() as conn:
            append_audit(conn, self.actor.username, "store_backed_up", "store", out.name,
                         {"path": str(out), "bytes": size, "sha256": digest, "audit_seq": entries})
        return BackupResult(out, size, digest, entries, time.perf_counter() - started)


def _backup_fault(out: Path, exc: sqlite3.Error) -> BaseException:
    """SQLite failing to write the copy: the backup's disk, not the database's (whose words
    the driver's error would otherwise get: "the disk holding the database is full")."""
    text = str(exc).lower()
    if "full" in text:
        return StoreFull(f"the disk holding the backup {out} is full: no backup was written (the "
                         "store is unchanged); free some space there or choose another place",
                         path=str(out))
    if "readonly" in text or "read-only" in text or "unable to open" in text or "i/o" in text:
        return StoreNotWritable(f"cannot write the backup {out} ({exc}): no backup was written; "
                                "choose another place", path=str(out))
    return exc


def _check_schema(source: Path, scratch: Path) -> None:
    """A copy of the backup must migrate to this FinFlow's schema and then hold every table:
    a file that only claims a revision (an ``alembic_version`` table and nothing else) was
    copied over the store first and failed after, the store's data gone."""
    scratch.mkdir(parents=True, exist_ok=True)
    staged = scratch / f".restore-check-{os.getpid()}.db"
    try:
        with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, \
                sqlite3.connect(staged) as copy:
            src.backup(copy)
        src.close()
        copy.close()
        with open_store(f"sqlite:///{staged}", recover=False) as store, store.connect() as conn:
            found = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))
                        .scalars())
    except (DBAPIError, sqlite3.DatabaseError) as exc:
        raise StoreDamaged(f"--from {source} is not a FinFlow backup: its schema cannot be brought "
                           f"to this FinFlow's ({str(getattr(exc, 'orig', exc))[:200]}); nothing "
                           "was changed", path=str(source)) from None
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{staged}{suffix}").unlink(missing_ok=True)
    missing = sorted(set(load_all_tables().tables) - found)
    if missing:
        raise StoreDamaged(f"--from {source} is not a FinFlow backup: it has no {', '.join(missing[:5])}"
                           f"{' ...' if len(missing) > 5 else ''} table; nothing was changed",
                           path=str(source), missing_tables=missing)


def _has_data(path: Path) -> bool:
    """Whether the store at ``path`` holds anything worth keeping (users, batches, audit)."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            return any(conn.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone() is not None  # noqa: S608
                       for t in ("users", "batches", "audit_log", "model_versions") if t in tables)
    except sqlite3.DatabaseError:
        return True  # damaged: it may still hold data someone wants


def restore(config: Config, source: Path, *, force: bool = False, actor: str = "system") -> RestoreResult:
    """Copy the backup ``source`` into the config's SQLite store, then verify the trail."""
    url = config.paths.database_url
    target = sqlite_path(url)
    if target is None:
        raise pg_advice(url, "restore")
    source = Path(source)
    if not source.is_file():
        raise InvalidInput(f"--from {source}: no such backup file", field="from")
    try:
        check_sqlite_file(source)
    except StoreDamaged as exc:  # its words ("restore it with ...") are for the store itself
        what = {"truncated": "is truncated", "not_a_database": "is not a SQLite database"}.get(
            str(exc.details.get("reason")), "is damaged")
        raise StoreDamaged(f"--from {source} {what}: it is no usable backup; nothing was changed. "
                           "Choose another backup file", path=str(source),
                           reason=exc.details.get("reason")) from None
    try:
        _check_copy(source)
        with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src:
            revision = src.execute("SELECT version_num FROM alembic_version").fetchone()
        src.close()
    except sqlite3.DatabaseError as exc:
        raise StoreDamaged(f"--from {source} is not a FinFlow backup ({exc})", path=str(source)) from None
    if revision is None:
        raise StoreDamaged(f"--from {source} is not a FinFlow backup (no schema revision)",
                           path=str(source))
    _check_schema(source, target.parent)  # before anything of the store is replaced
    replaced = _has_data(target)
    if replaced and not force:
        raise Conflict(f"the store {target} already holds data: restoring would replace it. Back "
                       "it up first (`finflow backup`), stop FinFlow, then run restore again "
                       "with --force", reason="not_empty", path=str(target))
    try:
        check_sqlite_file(target)
    except StoreDamaged:
        if target.exists():  # a damaged file cannot receive the copy: keep it aside
            os.replace(target, target.with_name(f"{target.name}.damaged-{int(time.time())}"))
        for suffix in ("-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
    store = open_store(url, upgrade=False, recover=False)  # creates it 0600 if missing
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            with store.engine.connect() as conn:
                src.backup(conn.connection.dbapi_connection)  # SQLite copies into the live file
        finally:
            src.close()
    finally:
        store.close()
    store = open_store(url)  # a backup from an older FinFlow is migrated on the way
    try:
        chain, decisions = verify_audit(store), verify_decisions(store)
        with store.begin() as conn:
            append_audit(conn, actor, "store_restored", "store", source.name, {
                "from": str(source), "sha256": _sha256(source), "replaced_data": replaced,
                "chain_ok": chain.ok, "decisions_ok": decisions.ok})
        with store.connect() as conn:
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        store.close()
    return RestoreResult(target, source, replaced, current, chain, decisions)
