"""The life of a stored batch: claimed while loading, published, voided; dead loads removed.

A batch is written in many short transactions while its row says ``loading``; every read
ignores it until one short transaction publishes it. The row records who is writing it
(process id, host) and a heartbeat the loader refreshes (each chunk, and a timer while it
computes). A load is *abandoned* when its process is gone: on the loader's own host the
process table says so (a process id that is alive there is never taken for dead); from
another host, a heartbeat older than ``stale`` says so. Abandoned loads are removed
(audited) when the store is opened or the next run starts: the remover first takes the
row over (``aborting``: an atomic compare-and-set, so two removers never both work), then
deletes the rows a window at a time, each window its own short transaction.

One *live* batch per file: the database allows one loading, aborting or published row per
file hash (``uq_batches_live_sha256``), so two runs of the same file cannot both store it.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, select, update

from finflow_core.errors import Conflict, NotFound
from finflow_core.lending.terms import OPEN_STATUSES, BatchState
from finflow_core.store.audit_chain import append_audit
from finflow_core.store.engine import Store
from finflow_core.store.lending_tables import (
    LIVE_STATES,
    applications,
    batches,
    claims,
    decisions,
    drift_runs,
    portfolio_rollup,
    probability_rollup,
    quarantine_issues,
    quarantine_rows,
    scores,
)
from finflow_core.store.lifecycle_tables import application_arms, shadow_scores
from finflow_core.store.tables import iso_utc, parse_utc, utcnow

#: A live loader refreshes its heartbeat at least this often (seconds).
HEARTBEAT_SECONDS = 15.0
#: A load from another host whose heartbeat is older than this is abandoned.
STALE_AFTER = timedelta(minutes=10)
#: Rows removed per transaction when a load is removed.
DELETE_ROWS = 20_000

_live: set[str] = set()  # batch ids this process is loading now
_live_lock = threading.Lock()


class AlreadyStored(Exception):
    """The same file is stored (published) already, as ``batch_id``."""

    def __init__(self, batch_id: str) -> None:
        super().__init__(batch_id)
        self.batch_id = batch_id


class BatchBeingLoaded(Conflict):
    """Another live run is storing the same file right now."""


class LoadLost(Conflict):
    """This run's loading row was taken over (it looked abandoned): nothing was published."""


@dataclass(frozen=True)
class LoadRow:
    id: str
    state: BatchState
    file_name: str
    uploaded_by: str
    uploaded_at: str
    loader_pid: int | None
    loader_host: str | None
    heartbeat_at: str | None
    rows_written: int


_LOAD_COLUMNS = (batches.c.id, batches.c.state, batches.c.file_name, batches.c.uploaded_by,
                 batches.c.uploaded_at, batches.c.loader_pid, batches.c.loader_host,
                 batches.c.heartbeat_at, batches.c.rows_written)


def _load_row(r: Any) -> LoadRow:
    return LoadRow(r.id, BatchState(r.state), r.file_name, r.uploaded_by, r.uploaded_at,
                   r.loader_pid, r.loader_host, r.heartbeat_at, int(r.rows_written or 0))


def this_loader() -> tuple[int, str]:
    """(process id, host name) recorded on the rows this process loads."""
    return os.getpid(), socket.gethostname()[:255]


def now_text() -> str:
    """Heartbeats are real time, whatever clock the services run on."""
    return iso_utc(utcnow())


# -- starting a load ----------------------------------------------------------------------------

class _InProgress(Exception):
    def __init__(self, row: LoadRow) -> None:
        self.row = row


def claim(conn: Connection, base_id: str, sha256: str, values: dict[str, Any]) -> str:
    """Insert the ``loading`` row of a new load and return its batch id.

    Raises :class:`AlreadyStored` if the file is published, ``_InProgress`` if another
    load holds it. The first load of a file gets ``base_id``; a rerun after a void gets
    ``base_id-2``, ``-3``... (ids are never reused).
    """
    live = conn.execute(select(*_LOAD_COLUMNS).where(batches.c.sha256 == sha256)
                        .where(batches.c.state.in_(LIVE_STATES))).first()
    if live is not None:
        row = _load_row(live)
        if row.state == BatchState.PUBLISHED:
            raise AlreadyStored(row.id)
        raise _InProgress(row)
    batch_id, k = base_id, 1
    while conn.execute(select(batches.c.id).where(batches.c.id == batch_id)).first() is not None:
        k += 1
        batch_id = f"{base_id}-{k}"
    pid, host = this_loader()
    conn.execute(batches.insert().values(
        id=batch_id, sha256=sha256, state=BatchState.LOADING, loader_pid=pid, loader_host=host,
        heartbeat_at=now_text(), rows_written=0, **values))
    with _live_lock:
        _live.add(batch_id)
    return batch_id


def start_load(store: Store, base_id: str, sha256: str, values: dict[str, Any],
               conn: Connection | None = None, *, stale: timedelta = STALE_AFTER) -> str:
    """Claim a new load (in ``conn``, or in its own short transaction), removing an abandoned
    load of the same file first; :class:`BatchBeingLoaded` if a live one holds it."""
    from sqlalchemy.exc import IntegrityError

    for _ in range(5):
        try:
            if conn is not None:
                return claim(conn, base_id, sha256, values)
            with store.begin() as own:
                return claim(own, base_id, sha256, values)
        except _InProgress as busy:
            row = busy.row
            if conn is None and is_abandoned(row, stale=stale):
                remove_load(store, row, why="abandoned")
                continue
            raise _being_loaded(row) from None
        except IntegrityError:
            if conn is not None:
                raise
            continue  # another run claimed the file between our read and insert: look again
    raise BatchBeingLoaded("the file is being stored by another run right now: try again shortly",
                           reason="loading")


def _being_loaded(row: LoadRow) -> BatchBeingLoaded:
    verb = "stored" if row.state == BatchState.LOADING else "removed after a failed run"
    return BatchBeingLoaded(
        f"{row.file_name} is being {verb} right now as batch {row.id} by {row.uploaded_by} "
        f"(process {row.loader_pid} on {row.loader_host}, since {row.uploaded_at[:16].replace('T', ' ')} "
        f"UTC, {row.rows_written:,} rows so far): wait for it to finish, then `finflow batches "
        "list` shows it", reason="loading", batch_id=row.id, loader_pid=row.loader_pid,
        loader_host=row.loader_host, uploaded_by=row.uploaded_by, rows_written=row.rows_written)


def finished(batch_id: str) -> None:
    """This process no longer loads ``batch_id`` (published or removed)."""
    with _live_lock:
        _live.discard(batch_id)


# -- liveness ---------------------------------------------------------------------------------------

def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


def is_abandoned(row: LoadRow, *, now: datetime | None = None, stale: timedelta = STALE_AFTER) -> bool:
    """Whether the process writing ``row`` is gone (see the module docstring)."""
    pid, host = this_loader()
    if row.loader_host == host and row.loader_pid:
        if row.loader_pid == pid:
            with _live_lock:
                return row.id not in _live  # ours, but no longer loading: a failed abort
        return not pid_alive(row.loader_pid)
    beat = parse_utc(row.heartbeat_at or row.uploaded_at)
    return (now or utcnow()) - beat > stale


def loads_in_progress(conn: Connection) -> list[LoadRow]:
    return [_load_row(r) for r in conn.execute(
        select(*_LOAD_COLUMNS).where(batches.c.state.in_((BatchState.LOADING, BatchState.ABORTING)))
        .order_by(batches.c.uploaded_at))]


def recover_abandoned(store: Store, *, stale: timedelta = STALE_AFTER) -> list[str]:
    """Remove every abandoned load (audited as ``batch_load_abandoned``); their batch ids."""
    with store.connect() as conn:
        rows = loads_in_progress(conn)
    removed = []
    for row in rows:
        if is_abandoned(row, stale=stale) and remove_load(store, row, why="abandoned"):
            removed.append(row.id)
    return removed


# -- heartbeats -------------------------------------------------------------------------------------

def beat(conn: Connection, batch_id: str, rows: int = 0) -> None:
    """Refresh this loader's heartbeat (and its progress) in the caller's transaction;
    :class:`LoadLost` if the row is no longer this process's load."""
    pid, host = this_loader()
    changed = conn.execute(
        update(batches).where(batches.c.id == batch_id).where(batches.c.state == BatchState.LOADING)
        .where(batches.c.loader_pid == pid).where(batches.c.loader_host == host)
        .values(heartbeat_at=now_text(), rows_written=batches.c.rows_written + rows)
    ).rowcount
    if changed != 1:
        raise LoadLost(f"batch {batch_id} was removed while it was being stored (it looked "
                       "abandoned): nothing was published; run the file again",
                       reason="load_lost", batch_id=batch_id)


class Heartbeat:
    """A timer thread that keeps a load's heartbeat fresh while the run computes."""

    def __init__(self, store: Store, batch_id: str, every: float = HEARTBEAT_SECONDS) -> None:
        self.store, self.batch_id, self.every = store, batch_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{batch_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                with self.store.begin() as conn:
                    beat(conn, self.batch_id)
            except Exception:  # noqa: BLE001 - the writer finds out at its next chunk
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# -- removing a load --------------------------------------------------------------------------------

def remove_load(store: Store, row: LoadRow, *, why: str) -> bool:
    """Take a load over and delete its rows a window at a time; False if another process
    took it first. ``why`` is "abandoned" (audited) or "failed" (this process's own run)."""
    pid, host = this_loader()
    with store.begin() as conn:
        b = batches.c
        taken = conn.execute(
            update(batches).where(b.id == row.id).where(b.state == row.state)
            .where(b.loader_pid == row.loader_pid if row.loader_pid is not None else b.loader_pid.is_(None))
            .where(b.heartbeat_at == row.heartbeat_at if row.heartbeat_at is not None
                   else b.heartbeat_at.is_(None))
            .values(state=BatchState.ABORTING, loader_pid=pid, loader_host=host,
                    heartbeat_at=now_text())
        ).rowcount
    if taken != 1:
        return False
    with _live_lock:
        _live.add(row.id)
    try:
        counts = _delete_rows(store, row.id)
        with store.begin() as conn:
            for table in (drift_runs, portfolio_rollup, probability_rollup):
                conn.execute(delete(table).where(table.c.batch_id == row.id))
            conn.execute(delete(batches).where(batches.c.id == row.id)
                         .where(batches.c.state == BatchState.ABORTING))
            if why == "abandoned":
                append_audit(conn, "system", "batch_load_abandoned", "batch", row.id, {
                    "file": row.file_name, "uploaded_by": row.uploaded_by,
                    "started_at": row.uploaded_at, "loader_pid": row.loader_pid,
                    "loader_host": row.loader_host, "last_heartbeat": row.heartbeat_at,
                    "rows_removed": counts,
                })
    finally:
        finished(row.id)
    return True


def abort_load(store: Store, batch_id: str) -> None:
    """Remove this process's own unfinished load (its run failed): nothing stays behind."""
    with store.connect() as conn:
        found = conn.execute(select(*_LOAD_COLUMNS).where(batches.c.id == batch_id)).first()
    if found is None or BatchState(found.state) != BatchState.LOADING:
        finished(batch_id)
        return
    finished(batch_id)  # so the take-over below sees it as ours and no longer alive
    remove_load(store, _load_row(found), why="failed")


def _delete_rows(store: Store, batch_id: str) -> dict[str, int]:
    """Delete a load's rows, children first, ``DELETE_ROWS`` applications per transaction."""
    counts = dict.fromkeys(("applications", "quarantine_rows"), 0)
    a = applications.c
    while True:
        with store.begin() as conn:
            ids = select(a.id).where(a.batch_id == batch_id).order_by(a.id).limit(DELETE_ROWS)
            window = select(ids.subquery().c.id)
            conn.execute(delete(decisions).where(decisions.c.application_id.in_(window)))
            conn.execute(delete(scores).where(scores.c.application_id.in_(window)))
            conn.execute(delete(claims).where(claims.c.application_id.in_(window)))
            for table in (application_arms, shadow_scores):  # a running test's rows
                conn.execute(delete(table).where(table.c.application_id.in_(window)))
            n = conn.execute(delete(applications).where(a.id.in_(window))).rowcount
            _keep_alive(conn, batch_id)
        counts["applications"] += n
        store.yield_to_others()
        if n < DELETE_ROWS:
            break
    for table, key in ((quarantine_issues, None), (quarantine_rows, "quarantine_rows")):
        while True:
            with store.begin() as conn:
                window = select(select(table.c.id).where(table.c.batch_id == batch_id)
                                .limit(DELETE_ROWS).subquery().c.id)
                n = conn.execute(delete(table).where(table.c.id.in_(window))).rowcount
            if key:
                counts[key] += n
            store.yield_to_others()
            if n < DELETE_ROWS:
                break
    return counts


def _keep_alive(conn: Connection, batch_id: str) -> None:
    conn.execute(update(batches).where(batches.c.id == batch_id)
                 .where(batches.c.state == BatchState.ABORTING).values(heartbeat_at=now_text()))


# -- voiding a published batch ----------------------------------------------------------------------

@dataclass(frozen=True)
class VoidResult:
    batch_id: str
    file_name: str
    origin: str
    model_version: str
    week_start: str
    open_cases: int
    voided_at: str
    voided_by: str
    reason: str


def void(conn: Connection, batch_id: str, reason: str, actor: str, at: datetime) -> VoidResult:
    """Void a published batch in the caller's transaction (audited): its open cases leave the
    queue (claims dropped), its applications leave the roll-ups; every row stays stored."""
    b = batches.c
    query = select(b.id, b.state, b.file_name, b.origin, b.model_version, b.week_start, b.sha256,
                   b.config_sha256).where(b.id == batch_id)
    row = conn.execute(query.with_for_update()).first()
    if row is None or BatchState(row.state) in (BatchState.LOADING, BatchState.ABORTING):
        raise NotFound(f"no stored batch {batch_id!r}: see `finflow batches list`", batch_id=batch_id)
    if BatchState(row.state) == BatchState.VOIDED:
        raise Conflict(f"batch {batch_id} is voided already", reason="voided", batch_id=batch_id)
    a = applications.c
    open_cases = int(conn.execute(select(func.count()).select_from(applications).where(
        and_(a.batch_id == batch_id, a.status.in_(OPEN_STATUSES)))).scalar_one())
    conn.execute(delete(claims).where(claims.c.application_id.in_(
        select(a.id).where(a.batch_id == batch_id))))
    for table in (portfolio_rollup, probability_rollup):
        conn.execute(delete(table).where(table.c.batch_id == batch_id))
    when = iso_utc(at)
    conn.execute(update(batches).where(b.id == batch_id).values(
        state=BatchState.VOIDED, voided_at=when, voided_by=actor, void_reason=reason))
    append_audit(conn, actor, "batch_voided", "batch", batch_id, {
        "reason": reason, "file": row.file_name, "sha256": row.sha256, "origin": row.origin,
        "open_cases_removed": open_cases, "config_sha256": row.config_sha256,
    }, model_version=row.model_version, at=at)
    return VoidResult(batch_id, row.file_name, row.origin, row.model_version, row.week_start,
                      open_cases, when, actor, reason)
