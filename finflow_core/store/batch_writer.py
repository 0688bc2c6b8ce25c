"""Writing a scored batch into the store: chunks in short transactions, then one publish.

While a batch loads, its row says ``loading`` and every read ignores it; each chunk is
written in transactions of at most ``rows_per_transaction`` applications (SQLite's write
lock is held for a fraction of a second at a time, and the loader pauses between them so a
sign-in or a decision gets in). :meth:`StoreSink.finish` publishes the batch in one short
transaction: totals, roll-ups, drift, audit entries. A run that fails is removed
(:meth:`StoreSink.abort`); a run that is killed is removed by the next one to open the store
(:mod:`finflow_core.store.batch_loads`). A typed-in application (a batch of one) is
written and published in one transaction.

Automatic decisions are audited through one entry per batch that carries a digest of all
of them, so ``audit verify`` can tell if any was changed later.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from finflow_core.lending.drift import DriftReport
from finflow_core.lending.intake.reader import BatchFile
from finflow_core.lending.intake.validation import ChunkResult
from finflow_core.lending.scoring import ScoringEngine, reason_texts
from finflow_core.lending.terms import (
    AUTO_OUTCOME,
    STATUS_OF_BAND,
    Band,
    BatchOrigin,
    DecisionKind,
    Outcome,
)
from finflow_core.pipeline.run import BatchSummary
from finflow_core.store import batch_loads
from finflow_core.store.batch_loads import AlreadyStored, BatchBeingLoaded, Heartbeat
from finflow_core.store.batch_publish import publish
from finflow_core.store.bulk import bulk_insert
from finflow_core.store.chunk_rows import (
    ChunkRows,
    PreparedChunk,
    Sealed,
    clipped,
    mapped,
    reasons_json,
    records_json,
)
from finflow_core.store.decision_check import decision_digest_line
from finflow_core.store.engine import Store
from finflow_core.store.lending_tables import (
    applications,
    decisions,
    scores,
)
from finflow_core.store.lifecycle_tables import application_arms, shadow_scores
from finflow_core.store.quarantine_writer import write_quarantine
from finflow_core.store.rollup import RollupAccumulator
from finflow_core.store.row_ids import allocate_ids, next_free_id
from finflow_core.store.seals import BatchSeals
from finflow_core.store.tables import iso_utc

__all__ = ["AlreadyStored", "BatchBeingLoaded", "StoreSink", "week_start"]

ROLLUP_COLUMNS = ("week_start", "batch_id", "band", "status", "decided_kind", "segment_1",
                  "segment_2", "segment_3", "amount", "expected_profit", "probability")
EXTERNAL_ID_LEN = applications.c.external_id.type.length
#: Applications per write transaction while a batch loads: small enough that sign-in, which
#: writes, never waits long for the write lock (at 10,000 a loaded 2-core machine held it for up
#: to 3.9 s and sign-in's p95 was 3.0 s during a 1M-row run).
ROWS_PER_TRANSACTION = 2_500


def week_start(d: date | datetime) -> str:
    day = d.date() if isinstance(d, datetime) else d
    return (day - timedelta(days=day.weekday())).isoformat()


class StoreSink:
    """Writes a run's chunks into the store under an invisible loading state, then publishes.

    Parameters
    ----------
    store : where the batch goes.
    batch, scoring : what is stored and the model and strategy that score it.
    actor_name : who uploaded it (audited).
    now : the run's time (from the service's clock).
    origin : a file, or a typed-in form (drift is then measured per week, not per batch).
    one_transaction : write and publish in a single transaction (a batch of one).
    rows_per_transaction : applications per write transaction while loading (default
        :data:`ROWS_PER_TRANSACTION`).

    Raises :class:`AlreadyStored` if the file is stored (published) already and
    :class:`BatchBeingLoaded` if another live run is storing it now.
    """

    def __init__(self, store: Store, batch: BatchFile, scoring: ScoringEngine, actor_name: str,
                 now: datetime, *, origin: BatchOrigin | str = BatchOrigin.FILE,
                 one_transaction: bool = False,
                 rows_per_transaction: int | None = None) -> None:
        self.store = store
        self.batch = batch
        self.scoring = scoring
        self.config = scoring.config
        self.actor_name = actor_name
        self.origin = BatchOrigin(origin)
        self.at = now
        self.now = iso_utc(now)
        self.upload_week = week_start(now)
        self.weeks: dict[str, int] = {}
        self.digest = hashlib.sha256()
        self.auto = {Outcome.APPROVE: 0, Outcome.DECLINE: 0}
        self.rollups = RollupAccumulator()
        self.arm_counts: dict[str, int] = {}  # a running split's applications per arm
        self.rows_per_transaction = max(1, int(rows_per_transaction or ROWS_PER_TRANSACTION))
        self.heartbeat: Heartbeat | None = None
        self._next_app_id: int | None = None  # the id the next sealed-ahead application gets
        self._stack = contextlib.ExitStack()
        self._conn: Connection | None = None
        self.published = False
        #: chunks may be written from a writer thread (each in its own transaction)
        self.background = not one_transaction
        if one_transaction:
            self._conn = self._stack.enter_context(store.begin())
        if one_transaction:
            self.seals = BatchSeals(self._conn)  # keyed per-row seals; their sums go into batch_scored
        else:
            with store.connect() as conn:
                self.seals = BatchSeals(conn)
        s = scoring.strategy
        values = dict(
            file_name=batch.name[:255], uploaded_by=actor_name, uploaded_at=self.now,
            model_version=scoring.bundle.version, low_edge=s.low_edge, high_edge=s.high_edge,
            week_start=self.upload_week, rows_in=0, rows_valid=0, rows_quarantined=0, n_low=0,
            n_medium=0, n_high=0, automation_rate=0.0, expected_profit=None,
            drift_status="stable", summary="{}", origin=self.origin,
            config_sha256=self.config.sha256 or None,
        )
        try:
            self.batch_id = batch_loads.start_load(store, batch.batch_id, batch.sha256, values,
                                                   self._conn)
        except BaseException:
            self._stack.close()
            raise
        if self._conn is None:
            self.heartbeat = Heartbeat(store, self.batch_id)

    # -- writing ------------------------------------------------------------------------------
    def _write(self, work: Any, rows: int = 0) -> None:
        """``work(conn)`` in the load's transaction (one_transaction) or in a short one of its own."""
        if self._conn is not None:
            work(self._conn)
            return
        with self.store.begin(bulk=True) as conn:
            batch_loads.beat(conn, self.batch_id, rows)
            work(conn)
        self.store.yield_to_others()

    def write_chunk(self, chunk: ChunkResult, scored: pd.DataFrame) -> None:
        self.write_prepared(self.prepare_chunk(chunk, scored))

    def prepare_chunk(self, chunk: ChunkResult, scored: pd.DataFrame) -> PreparedChunk:
        """Everything a chunk's transactions will insert, sealed ahead: the work that needs
        no database lock, done before any of them begins."""
        if scored.empty:
            return PreparedChunk(chunk, [])
        raw = chunk.valid_raw if chunk.valid_raw is not None else chunk.valid.astype(str)
        rows = self._prepare(chunk.valid, raw, scored)
        step = self.rows_per_transaction
        parts = [rows.part(lo, min(lo + step, rows.n)) for lo in range(0, rows.n, step)]
        return PreparedChunk(chunk, [(part, self._seal_ahead(part)) for part in parts])

    def write_prepared(self, prepared: PreparedChunk) -> None:
        """Store a prepared chunk: its quarantined rows, then its rows in short transactions."""
        chunk = prepared.chunk
        if not chunk.quarantined.empty:
            self._write(lambda conn: write_quarantine(conn, self.batch_id, chunk, self.config.id_column),
                        len(chunk.quarantined))
        for part, sealed in prepared.parts:
            self._write(lambda conn, part=part, sealed=sealed: self._write_rows(conn, part, sealed),
                        part.n)

    def _seal_ahead(self, rows: ChunkRows) -> Sealed | None:
        """Seal a transaction's applications and scores before it takes SQLite's write lock,
        under the ids they will get: the next after the ones this load has sealed so far,
        unless another application is stored first (then :meth:`_write_rows` seals them
        again under the lock, and later guesses move up). The lock is held for the inserts
        alone. Only loaders store applications, so the guess nearly always holds."""
        if self._conn is not None or self.store.dialect != "sqlite":
            return None
        if self._next_app_id is None:
            with self.store.connect() as conn:
                self._next_app_id = next_free_id(conn, applications)
        start = self._next_app_id
        self._next_app_id += rows.n
        return self._sealed(rows, np.arange(start, start + rows.n, dtype=np.int64))

    def _guessed_wrong(self, guessed: int, actual: int) -> None:
        """Another writer took ids this load had guessed: move the later guesses with them."""
        if self._next_app_id is not None:
            self._next_app_id += actual - guessed

    def _sealed(self, rows: ChunkRows, app_ids: np.ndarray) -> Sealed:
        apps = {"id": app_ids, **rows.applications}
        app_seals = self.seals.seal_columns(applications, apps, rows.n)
        score_columns = {"application_id": app_ids, **rows.scores}
        score_seals = self.seals.seal_columns(scores, score_columns, rows.n)
        tests = tuple(self.seals.seal_columns(table, {"application_id": app_ids, **extra}, rows.n)
                      for table, extra in rows.experiments)  # a running test's arms, shadow scores
        return Sealed(app_ids, app_seals, score_seals, tests)

    def _prepare(self, valid: pd.DataFrame, raw: pd.DataFrame, scored: pd.DataFrame) -> ChunkRows:
        """Everything stored for a chunk's applications except their ids and seals, column by
        column and once per chunk (outside the write transactions); its roll-up groups, week
        counts and automatic decisions are added up here too."""
        cfg, n = self.config, len(scored)
        weeks = self._weeks(valid)
        for w, k in pd.Series(weeks).value_counts().items():
            self.weeks[str(w)] = self.weeks.get(str(w), 0) + int(k)
        bands = scored["band"].to_numpy(dtype=object)
        auto = bands != Band.MEDIUM
        row_numbers = scored["row_number"].to_numpy(dtype=np.int64)
        probability = scored["probability"].to_numpy(dtype=float)
        external = clipped(scored["application_id"].astype(str).tolist(), EXTERNAL_ID_LEN)
        segs = [valid[c].astype(object).where(valid[c].notna(), None).to_numpy() for c in cfg.segments]
        apps = {
            "batch_id": self.batch_id, "row_number": row_numbers,
            "external_id": external, "week_start": weeks,
            "amount": scored["loan_amount"].to_numpy(dtype=float),
            **{f"segment_{i + 1}": (segs[i] if i < len(segs) else None) for i in range(3)},
            "data": records_json(raw),
            "probability": probability, "band": bands,
            "status": mapped(bands, STATUS_OF_BAND),
            "expected_profit": self._profit(scored["expected_profit"]),
            "decided_kind": np.where(auto, DecisionKind.AUTO, None),
        }
        self.rollups.add(pd.DataFrame({k: apps[k] for k in ROLLUP_COLUMNS}))
        # the version that scored each row (a split's challenger arm is another model)
        version: Any = (scored["model_version"].to_numpy(dtype=object) if "model_version" in scored
                        else self.scoring.bundle.version)
        reasons = scored["reasons"].tolist()
        encoded = scored["reasons_json"].tolist() if "reasons_json" in scored else None
        score_columns = {
            "model_version": version, "probability": probability,
            "band": bands, "ev_approve": scored["ev_approve"].to_numpy(dtype=float),
            "ev_review": scored["ev_review"].to_numpy(dtype=float),
            "reasons": reasons_json(reasons, encoded), "scored_at": self.now,
        }
        idx = np.flatnonzero(auto)
        outcomes = mapped(bands[idx], AUTO_OUTCOME).tolist()
        decided = version[idx] if isinstance(version, np.ndarray) else version
        by = (np.array([f"model:{v}" for v in decided], dtype=object) if isinstance(decided, np.ndarray)
              else f"model:{decided}")
        for outcome, k in Counter(outcomes).items():
            self.auto[outcome] += k
        # the ids as stored: verify recomputes this digest from the store
        self.digest.update(b"".join(map(decision_digest_line, row_numbers[idx].tolist(),
                                        np.asarray(external, dtype=object)[idx].tolist(), outcomes,
                                        probability[idx].tolist())))
        decision_columns = {
            "outcome": outcomes, "kind": DecisionKind.AUTO, "decided_by": by,
            "reason": [reason_texts(reasons[i]) if bands[i] == Band.HIGH else "" for i in idx.tolist()],
            "note": "", "decided_at": self.now, "model_version": decided, "supersedes_id": None,
        }
        experiments = self._experiment_columns(scored)
        return ChunkRows(n, apps, score_columns, auto, decision_columns, experiments)

    def _write_rows(self, conn: Connection, rows: ChunkRows, sealed: Sealed | None = None) -> None:
        """One transaction's applications, each table in one bulk insert: their ids are
        taken under the write lock (sealed again if the guess of :meth:`_seal_ahead` was
        wrong), and every application points at its automatic decision."""
        n = rows.n
        start = next_free_id(conn, applications)
        if sealed is not None and int(sealed.app_ids[0]) != start:
            self._guessed_wrong(int(sealed.app_ids[0]), start)
            sealed = None
        if sealed is None:
            sealed = self._sealed(rows, np.arange(start, start + n, dtype=np.int64))
        app_ids = sealed.app_ids
        n_auto = int(rows.auto.sum())
        decision_ids = np.full(n, None, dtype=object)
        decision_ids[rows.auto] = allocate_ids(conn, decisions, n_auto)
        columns = {"id": app_ids, **rows.applications, "current_decision_id": decision_ids,
                   "seal": sealed.applications}
        bulk_insert(conn, applications, columns, n)
        bulk_insert(conn, scores, {"application_id": app_ids, **rows.scores, "seal": sealed.scores}, n)
        self.seals.add_stored(applications, sealed.applications)
        self.seals.add_stored(scores, sealed.scores)
        for (table, extra), seals in zip(rows.experiments, sealed.experiments, strict=True):
            bulk_insert(conn, table, {"application_id": app_ids, **extra, "seal": seals}, n)
            self.seals.add_stored(table, seals)
        if n_auto:
            bulk_insert(conn, decisions, {
                "id": decision_ids[rows.auto].astype(np.int64), "application_id": app_ids[rows.auto],
                **rows.decisions}, n_auto)

    def _experiment_columns(self, scored: pd.DataFrame) -> list[tuple[Any, dict[str, Any]]]:
        """A split's arm of each application, a shadow's score of each (under a running test)."""
        out: list[tuple[Any, dict[str, Any]]] = []
        split = getattr(self.scoring, "split", None)
        if split is not None and "arm" in scored:
            arms = scored["arm"].to_numpy(dtype=object)
            for arm, k in pd.Series(arms).value_counts().items():
                self.arm_counts[str(arm)] = self.arm_counts.get(str(arm), 0) + int(k)
            out.append((application_arms, {"experiment_id": split.experiment_id, "arm": arms}))
        shadow = getattr(self.scoring, "shadow", None)
        if shadow is not None and "shadow_probability" in scored:
            out.append((shadow_scores, {
                "experiment_id": shadow.experiment_id, "model_version": shadow.version,
                "probability": scored["shadow_probability"].to_numpy(dtype=float),
                "band": scored["shadow_band"].to_numpy(dtype=object),
                "ev_approve": scored["shadow_ev_approve"].to_numpy(dtype=float),
            }))
        return out

    # -- publishing -----------------------------------------------------------------------------
    def finish(self, summary: BatchSummary, drift: DriftReport) -> None:
        """Publish the batch: one short transaction makes all of it visible at once."""
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self._conn is not None:
            publish(self._conn, self, summary, drift)
            self._stack.close()  # commits the one transaction
        else:
            with self.store.begin() as conn:
                batch_loads.beat(conn, self.batch_id)
                publish(conn, self, summary, drift)
            self.store.checkpoint()  # the load's WAL, before a user's commit has to do it
        self.published = True
        batch_loads.finished(self.batch_id)

    def experiment_details(self) -> dict[str, Any]:
        """A running test's figures for the batch's audit entry (none without one)."""
        details = getattr(self.scoring, "details", None)
        return details(self.arm_counts) if callable(details) else {}

    def abort(self, *, store_busy: bool = False) -> None:
        """The run failed: remove everything written for it (nothing was ever visible).

        ``store_busy``: it failed because the database stayed locked for the whole busy
        timeout. Removing the load would wait for the same lock as long again (a run told
        "locked for more than 30 s" after a minute), so its rows are left, still invisible,
        for the next run or start to remove as abandoned (this process no longer loads it).
        """
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.published:
            return
        if self._conn is not None:
            self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)  # rolls back
            batch_loads.finished(self.batch_id)
            return
        if store_busy:
            batch_loads.finished(self.batch_id)
            return
        batch_loads.abort_load(self.store, self.batch_id)

    def _profit(self, values: pd.Series) -> np.ndarray:
        """Expected profit as stored: NULL throughout when nothing is priced (a declined
        loan's 0 included: the batch's profit is unknown, not a sum of zeros)."""
        out = values.to_numpy(dtype=float)
        return out if self.config.pricing.priced else np.full(len(out), np.nan)

    # -- helpers ------------------------------------------------------------------------------
    def _weeks(self, valid: pd.DataFrame) -> list[str]:
        col = self.config.date_column
        if col is None or col not in valid:
            return [self.upload_week] * len(valid)
        d = pd.to_datetime(valid[col], errors="coerce")
        monday = (d - pd.to_timedelta(d.dt.day_of_week, unit="D")).dt.strftime("%Y-%m-%d")
        return monday.fillna(self.upload_week).tolist()
