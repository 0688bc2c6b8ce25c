"""Storing weekly runs: one batch, one transaction; the reports are exports of what is stored.

A batch is recognised by its file's SHA-256: the same file again returns the stored batch
and stores nothing. A run that fails or is killed half-way rolls back: no partial batch.
Automatic decisions are audited through one entry per batch that carries a digest of all
of them, so ``audit verify`` can tell if any was changed later.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, func, select, text, update
from sqlalchemy.exc import IntegrityError

from finflow_core.errors import NotFound
from finflow_core.lending.config import Config
from finflow_core.lending.drift import DriftReport
from finflow_core.lending.intake.reader import BatchFile, Source, open_batch
from finflow_core.lending.intake.validation import ChunkResult
from finflow_core.lending.scoring import ScoringEngine, reason_texts
from finflow_core.lending.spreadsheet import FORMULA_PREFIXES, spreadsheet_safe
from finflow_core.lending.strategy import BAND_DECISION, HIGH, MEDIUM
from finflow_core.pipeline.batch_run import BatchSummary, Progress, process_batch
from finflow_core.services.access import can, require
from finflow_core.services.auth import Principal
from finflow_core.services.models import active_strategy, load_champion
from finflow_core.store import Store
from finflow_core.store.audit_chain import append_audit
from finflow_core.store.bulk import bulk_insert
from finflow_core.store.decision_check import decision_digest_line
from finflow_core.store.lending_tables import (
    applications,
    batches,
    decisions,
    drift_runs,
    quarantine_issues,
    quarantine_rows,
    scores,
)
from finflow_core.store.rollup import add_applications
from finflow_core.store.tables import iso_utc, utcnow

ROLLUP_COLUMNS = ("week_start", "batch_id", "band", "status", "decided_kind", "segment_1",
                  "segment_2", "segment_3", "amount", "expected_profit", "probability")
STATUS_OF_BAND = {"low": "approved", "medium": "pending", "high": "declined"}
AUTO_OUTCOME = {band: outcome for band, outcome in BAND_DECISION.items() if band != MEDIUM}
EXTERNAL_ID_LEN = applications.c.external_id.type.length


class AlreadyStored(Exception):
    """Raised inside a run's transaction when the same file was stored first (a race)."""

    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id


def scoring_engine(store: Store, config: Config, *, explain: bool = True) -> ScoringEngine:
    """The champion with its active strategy, ready to score."""
    bundle = load_champion(store, config)
    return ScoringEngine(bundle, config, active_strategy(store, bundle), explain=explain)


def weekly_run(
    store: Store,
    actor: Principal,
    source: Source | BatchFile,
    config: Config,
    *,
    name: str | None = None,
    out_dir: Path | None = None,
    chunk_rows: int = 50_000,
    progress: Progress | None = None,
    engine: ScoringEngine | None = None,
) -> BatchSummary:
    """Validate, score, route, explain and measure drift of a batch, and store it all.

    The same file twice gives the same batch id and stores nothing the second time.
    """
    require(actor, "upload_batch")
    batch = source if isinstance(source, BatchFile) else open_batch(source, config, name=name)
    summary = store_batch(store, actor, batch, engine or scoring_engine(store, config),
                          chunk_rows=chunk_rows, progress=progress)
    if out_dir is not None:
        export_batch(store, summary.batch_id, Path(out_dir), config)
    return summary


def store_batch(
    store: Store, actor: Principal, batch: BatchFile, engine: ScoringEngine, *,
    chunk_rows: int = 50_000, progress: Progress | None = None,
) -> BatchSummary:
    """Process a batch into the store in one transaction.

    Entry points check their own action first (``upload_batch``, ``submit_application``);
    this refuses anyone who may do neither, whatever called it.
    """
    require_store_rights(actor)
    summary = stored_summary(store, batch.batch_id)
    if summary is not None:
        return summary
    try:
        with store.begin() as conn:
            sink = StoreSink(conn, batch, engine, actor)
            return process_batch(batch, engine, sink, chunk_rows=chunk_rows, progress=progress)
    except AlreadyStored:
        pass
    except IntegrityError:
        if stored_summary(store, batch.batch_id) is None:
            raise  # not a race on the same file: a real error
    summary = stored_summary(store, batch.batch_id)  # another run stored the same file first
    assert summary is not None
    return summary


def require_store_rights(actor: Principal) -> None:
    """Storing applications needs ``upload_batch`` (a file) or ``submit_application`` (a form)."""
    if not (can(actor, "upload_batch") or can(actor, "submit_application")):
        require(actor, "upload_batch")  # raises PermissionDenied naming the role needed


class StoreSink:
    """Writes a run's chunks into the store inside the caller's transaction."""

    def __init__(self, conn: Connection, batch: BatchFile, engine: ScoringEngine, actor: Principal) -> None:
        require_store_rights(actor)
        self.conn = conn
        self.batch = batch
        self.engine = engine
        self.config = engine.config
        self.actor = actor
        self.now = iso_utc(utcnow())
        self.upload_week = week_start(date.today())
        self.weeks: dict[str, int] = {}
        self.digest = hashlib.sha256()
        self.auto = {"approve": 0, "decline": 0}
        if conn.execute(select(batches.c.id).where(batches.c.sha256 == batch.sha256)).first():
            raise AlreadyStored(batch.batch_id)
        s = engine.strategy
        conn.execute(batches.insert().values(
            id=batch.batch_id, sha256=batch.sha256, file_name=batch.name[:255],
            uploaded_by=actor.username, uploaded_at=self.now, model_version=engine.bundle.version,
            low_edge=s.low_edge, high_edge=s.high_edge, week_start=self.upload_week,
            rows_in=0, rows_valid=0, rows_quarantined=0, n_low=0, n_medium=0, n_high=0,
            automation_rate=0.0, expected_profit=0.0, drift_status="stable", summary="{}",
        ))

    def write_chunk(self, chunk: ChunkResult, scored: pd.DataFrame) -> None:
        self._write_quarantine(chunk)
        if scored.empty:
            return
        cfg, n = self.config, len(scored)
        valid = chunk.valid
        weeks = self._weeks(valid)
        for w, k in pd.Series(weeks).value_counts().items():
            self.weeks[str(w)] = self.weeks.get(str(w), 0) + int(k)
        bands = scored["band"].to_numpy(dtype=object)
        auto = bands != "medium"
        row_numbers = scored["row_number"].to_numpy(dtype=np.int64)
        probability = scored["probability"].to_numpy(dtype=float)
        external = [str(e)[:EXTERNAL_ID_LEN] for e in scored["application_id"]]
        # ids are allocated up front (under the transaction's write lock) so each table is
        # one bulk insert, and every application points at its automatic decision
        app_ids = np.asarray(allocate_ids(self.conn, applications, n), dtype=np.int64)
        decision_ids = np.full(n, None, dtype=object)
        decision_ids[auto] = allocate_ids(self.conn, decisions, int(auto.sum()))
        raw = chunk.valid_raw if chunk.valid_raw is not None else valid.astype(str)
        segs = [valid[c].astype(object).where(valid[c].notna(), None).to_numpy() for c in cfg.segments]
        columns = {
            "id": app_ids, "batch_id": self.batch.batch_id, "row_number": row_numbers,
            "external_id": external, "week_start": weeks,
            "amount": scored["loan_amount"].to_numpy(dtype=float),
            **{f"segment_{i + 1}": (segs[i] if i < len(segs) else None) for i in range(3)},
            "data": raw.to_json(orient="records", lines=True, force_ascii=False).splitlines(),
            "probability": probability, "band": bands,
            "status": np.array([STATUS_OF_BAND[b] for b in bands], dtype=object),
            "expected_profit": scored["expected_profit"].to_numpy(dtype=float),
            "decided_kind": np.where(auto, "auto", None), "current_decision_id": decision_ids,
        }
        bulk_insert(self.conn, applications, columns, n)
        add_applications(self.conn, pd.DataFrame({k: columns[k] for k in ROLLUP_COLUMNS}))
        version = self.engine.bundle.version
        reasons = scored["reasons"].tolist()
        bulk_insert(self.conn, scores, {
            "application_id": app_ids, "model_version": version, "probability": probability,
            "band": bands, "ev_approve": scored["ev_approve"].to_numpy(dtype=float),
            "ev_review": scored["ev_review"].to_numpy(dtype=float),
            "reasons": [json.dumps(r, default=_json_default) for r in reasons], "scored_at": self.now,
        }, n)
        idx = np.flatnonzero(auto)
        if len(idx) == 0:
            return
        outcomes = [AUTO_OUTCOME[b] for b in bands[idx]]
        for i, outcome in zip(idx.tolist(), outcomes, strict=True):
            self.auto[outcome] += 1
            # the id as stored: verify_decisions recomputes this digest from the store
            self.digest.update(decision_digest_line(int(row_numbers[i]), external[i], outcome,
                                                    float(probability[i])))
        bulk_insert(self.conn, decisions, {
            "id": decision_ids[idx].astype(np.int64), "application_id": app_ids[idx],
            "outcome": outcomes, "kind": "auto", "decided_by": f"model:{version}",
            "reason": [reason_texts(reasons[i]) if bands[i] == HIGH else "" for i in idx.tolist()],
            "note": "", "decided_at": self.now, "model_version": version, "supersedes_id": None,
        }, len(idx))

    def finish(self, summary: BatchSummary, drift: DriftReport) -> None:
        week = max(self.weeks, key=lambda w: (self.weeks[w], w)) if self.weeks else self.upload_week
        bands = summary.bands
        self.conn.execute(update(batches).where(batches.c.id == self.batch.batch_id).values(
            rows_in=summary.rows_in, rows_valid=summary.rows_valid,
            rows_quarantined=summary.rows_quarantined, n_low=bands["low"], n_medium=bands["medium"],
            n_high=bands["high"], automation_rate=summary.automation_rate,
            expected_profit=summary.expected_profit, drift_status=drift.status, week_start=week,
            summary=json.dumps(_stored_summary_dict(summary), default=_json_default),
        ))
        self.conn.execute(drift_runs.insert().values(
            batch_id=self.batch.batch_id, model_version=self.engine.bundle.version,
            status=drift.status, score_psi=_finite(drift.score_psi),
            psi=json.dumps({k: _finite(v) for k, v in drift.features.items()}),
            counts=json.dumps(drift.counts), computed_at=self.now,
        ))
        version = self.engine.bundle.version
        append_audit(self.conn, self.actor.username, "batch_uploaded", "batch", self.batch.batch_id, {
            "file": self.batch.name, "sha256": self.batch.sha256, "rows_in": summary.rows_in,
            "rows_valid": summary.rows_valid, "rows_quarantined": summary.rows_quarantined,
        }, model_version=version)
        append_audit(self.conn, self.actor.username, "batch_scored", "batch", self.batch.batch_id, {
            "bands": bands, "automatic_approvals": self.auto["approve"],
            "automatic_declines": self.auto["decline"], "expected_profit": summary.expected_profit,
            "low_edge": self.engine.strategy.low_edge, "high_edge": self.engine.strategy.high_edge,
            "auto_decisions_sha256": self.digest.hexdigest(),
        }, model_version=version)
        append_audit(self.conn, self.actor.username, "drift_measured", "batch", self.batch.batch_id, {
            "status": drift.status, "score_psi": _finite(drift.score_psi), "alerts": drift.alerts,
        }, model_version=version)

    # -- helpers ------------------------------------------------------------------------------
    def _weeks(self, valid: pd.DataFrame) -> list[str]:
        col = self.config.date_column
        if col is None or col not in valid:
            return [self.upload_week] * len(valid)
        d = pd.to_datetime(valid[col], errors="coerce")
        monday = (d - pd.to_timedelta(d.dt.day_of_week, unit="D")).dt.strftime("%Y-%m-%d")
        return monday.fillna(self.upload_week).tolist()

    def _write_quarantine(self, chunk: ChunkResult) -> None:
        q = chunk.quarantined
        if q.empty:
            return
        id_col = self.config.id_column
        cells = q.drop(columns=["row_number", "line", "reasons"])
        data = cells.to_json(orient="records", lines=True, force_ascii=False).splitlines()
        self.conn.execute(quarantine_rows.insert(), [
            {
                "batch_id": self.batch.batch_id, "row_number": int(rn), "line": int(ln),
                "external_id": None if ext is None or pd.isna(ext) else str(ext)[:255],
                "reasons": str(rs), "data": d,
            }
            for rn, ln, rs, ext, d in zip(
                q["row_number"], q["line"], q["reasons"],
                q[id_col] if id_col in q else [None] * len(q), data, strict=True,
            )
        ])
        issues = chunk.issues
        self.conn.execute(quarantine_issues.insert(), [
            {
                "batch_id": self.batch.batch_id, "row_number": int(r.row_number),
                "column_name": str(r.column), "rule": str(r.rule),
                "value": None if r.value is None else str(r.value), "message": str(r.message),
            }
            for r in issues.itertuples(index=False)
        ])


def allocate_ids(conn: Connection, table: Any, n: int) -> list[int]:
    """``n`` fresh primary keys for ``table``, taken inside the caller's write transaction.

    PostgreSQL hands them out from the table's sequence (safe under concurrency); on SQLite
    the transaction holds the database's only write lock, so max(id) + 1 onwards is free.
    """
    if n == 0:
        return []
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
            {"t": table.name, "n": n},
        )
        return [int(r[0]) for r in rows]
    start = int(conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()) + 1
    return list(range(start, start + n))


def week_start(d: date | datetime) -> str:
    day = d.date() if isinstance(d, datetime) else d
    return (day - timedelta(days=day.weekday())).isoformat()


# -- reading back -------------------------------------------------------------------------------

def stored_summary(store: Store, batch_id: str) -> BatchSummary | None:
    """The summary of a stored batch, or None."""
    with store.connect() as conn:
        row = conn.execute(select(batches).where(batches.c.id == batch_id)).first()
    if row is None:
        return None
    d = json.loads(row.summary)
    d["already_stored"] = True
    d["timings"] = {}
    return BatchSummary(**d)


def find_batch_by_sha(store: Store, sha256: str) -> str | None:
    with store.connect() as conn:
        return conn.execute(select(batches.c.id).where(batches.c.sha256 == sha256)).scalar()


def list_batches(store: Store, limit: int = 100) -> list[dict[str, Any]]:
    with store.connect() as conn:
        rows = conn.execute(
            select(batches.c.id, batches.c.file_name, batches.c.uploaded_by, batches.c.uploaded_at,
                   batches.c.week_start, batches.c.model_version, batches.c.rows_in,
                   batches.c.rows_valid, batches.c.rows_quarantined, batches.c.n_low,
                   batches.c.n_medium, batches.c.n_high, batches.c.automation_rate,
                   batches.c.expected_profit, batches.c.drift_status)
            .order_by(batches.c.uploaded_at.desc()).limit(limit)
        ).mappings().all()
    return [dict(r) for r in rows]


DECISION_EXPORT = ("row_number", "application_id", "probability", "band", "decision", "status",
                   "expected_profit", "loan_amount", "model_version")


def iter_decision_frames(
    store: Store, batch_id: str, config: Config, chunk_rows: int = 100_000
) -> Iterator[pd.DataFrame]:
    """The stored decision table of a batch, in row-number order, a chunk at a time."""
    a = applications.c
    last = 0
    while True:
        with store.connect() as conn:
            rows = conn.execute(
                select(a.row_number, a.external_id, a.probability, a.band, a.status, a.expected_profit,
                       a.amount, scores.c.model_version, scores.c.reasons)
                .join(scores, scores.c.application_id == a.id)
                .where(a.batch_id == batch_id).where(a.row_number > last)
                .order_by(a.row_number).limit(chunk_rows)
            ).all()
        if not rows:
            return
        yield _decision_table(rows, config.model.reason_codes)
        last = int(rows[-1][0])


def decisions_frame(store: Store, batch_id: str, config: Config) -> pd.DataFrame:
    """The stored decision table of a batch: one row per valid application."""
    frames = list(iter_decision_frames(store, batch_id, config))
    if not frames:
        k = config.model.reason_codes
        return pd.DataFrame(columns=[*DECISION_EXPORT, *(f"reason_{i + 1}" for i in range(k))])
    return pd.concat(frames, ignore_index=True)


def _decision_table(rows: list[Any], k: int) -> pd.DataFrame:
    df = pd.DataFrame.from_records(
        [tuple(r) for r in rows],
        columns=["row_number", "application_id", "probability", "band", "status", "expected_profit",
                 "loan_amount", "model_version", "reasons"],
    )
    reasons = json.loads("[" + ",".join(df.pop("reasons")) + "]")  # one parse for the chunk
    df["probability"] = df["probability"].round(6)
    df["expected_profit"] = df["expected_profit"].round(2)
    df["decision"] = df["band"].map(BAND_DECISION)
    df = df[list(DECISION_EXPORT)]
    for i in range(k):
        df[f"reason_{i + 1}"] = [r[i]["text"] if i < len(r) else "" for r in reasons]
    return df


def quarantine_frame(store: Store, batch_id: str) -> pd.DataFrame:
    """Quarantined rows of a batch: row number, line, reasons, then the cells as written."""
    with store.connect() as conn:
        rows = conn.execute(
            select(quarantine_rows).where(quarantine_rows.c.batch_id == batch_id)
            .order_by(quarantine_rows.c.row_number)
        ).all()
    records = [{"row_number": r.row_number, "line": r.line, "reasons": r.reasons, **json.loads(r.data)}
               for r in rows]
    return pd.DataFrame(records, columns=None if records else ["row_number", "line", "reasons"])


def issues_frame(store: Store, batch_id: str) -> pd.DataFrame:
    with store.connect() as conn:
        rows = conn.execute(
            select(quarantine_issues.c.row_number, quarantine_issues.c.column_name.label("column"),
                   quarantine_issues.c.rule, quarantine_issues.c.value, quarantine_issues.c.message)
            .where(quarantine_issues.c.batch_id == batch_id)
            .order_by(quarantine_issues.c.row_number, quarantine_issues.c.id)
        ).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=["row_number", "column", "rule", "value", "message"])


def drift_history(store: Store, limit: int = 52) -> list[dict[str, Any]]:
    """Drift runs, newest first: status, score PSI and every feature's PSI."""
    with store.connect() as conn:
        rows = conn.execute(
            select(drift_runs.c.batch_id, drift_runs.c.model_version, drift_runs.c.status,
                   drift_runs.c.score_psi, drift_runs.c.psi, drift_runs.c.counts,
                   drift_runs.c.computed_at, batches.c.week_start, batches.c.file_name)
            .join(batches, batches.c.id == drift_runs.c.batch_id)
            .order_by(drift_runs.c.computed_at.desc(), drift_runs.c.id.desc()).limit(limit)
        ).all()
    return [
        {"batch_id": r.batch_id, "model_version": r.model_version, "status": r.status,
         "score_psi": r.score_psi, "features": json.loads(r.psi), "counts": json.loads(r.counts),
         "computed_at": r.computed_at, "week_start": r.week_start, "file_name": r.file_name}
        for r in rows
    ]


def export_batch(store: Store, batch_id: str, out_dir: Path, config: Config) -> dict[str, Path]:
    """Write decisions.csv, quarantine.csv, quarantine_issues.csv and summary.json from the store."""
    summary = stored_summary(store, batch_id)
    if summary is None:
        raise NotFound(f"no stored batch {batch_id!r}", batch_id=batch_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "decisions": out_dir / "decisions.csv",
        "quarantine": out_dir / "quarantine.csv",
        "issues": out_dir / "quarantine_issues.csv",
        "summary": out_dir / "summary.json",
    }
    frames = iter_decision_frames(store, batch_id, config)
    first = next(frames, None)
    if first is None:  # no valid application: the header alone
        write_csv(decisions_frame(store, batch_id, config), paths["decisions"])
    else:
        write_csv(itertools.chain([first], frames), paths["decisions"])
    write_csv(quarantine_frame(store, batch_id), paths["quarantine"])
    write_csv(issues_frame(store, batch_id), paths["issues"])
    d = summary.to_dict()
    d.pop("already_stored", None)
    d.pop("timings", None)
    paths["summary"].write_text(json.dumps(d, indent=2, default=_json_default))
    return paths


def write_csv(frames: pd.DataFrame | Iterable[pd.DataFrame], path: Path) -> None:
    """CSV that is safe to open in a spreadsheet (see :func:`safe_frame`), chunk by chunk."""
    chunks = [frames] if isinstance(frames, pd.DataFrame) else frames
    with open(path, "w", newline="", encoding="utf-8") as fh:
        first = True
        for df in chunks:
            safe_frame(df).to_csv(fh, index=False, header=first, lineterminator="\r\n")
            first = False


def csv_bytes(df: pd.DataFrame) -> bytes:
    """The same safe CSV, in memory (for downloads)."""
    return safe_frame(df).to_csv(index=False, lineterminator="\r\n").encode("utf-8")


def safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Text that a spreadsheet would run as a formula (=, +, -, @, tab, CR first) gets a '."""
    out = df.copy()
    out.columns = [spreadsheet_safe(str(c)) for c in df.columns]
    for i in range(out.shape[1]):
        col = out.iloc[:, i]
        if col.dtype == object or isinstance(col.dtype, pd.StringDtype):
            text = col.astype("str")  # Arrow strings: one vectorised test over the column
            risky = text.str.startswith(FORMULA_PREFIXES).fillna(False).to_numpy(dtype=bool)
            if risky.any():
                out.isetitem(i, col.astype(object).where(~risky, "'" + text))
    return out



def _stored_summary_dict(summary: BatchSummary) -> dict[str, Any]:
    d = summary.to_dict()
    d.pop("timings", None)
    d["already_stored"] = False
    return d


def _finite(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (datetime, date)):
        return o.isoformat()
    if isinstance(o, float) and not np.isfinite(o):
        return None
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def batch_ids(store: Store) -> Iterable[str]:
    with store.connect() as conn:
        return list(conn.execute(select(batches.c.id).order_by(batches.c.uploaded_at)).scalars())
