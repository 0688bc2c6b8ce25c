"""Reading stored batches back: summaries, lists, decision tables, quarantine, drift runs.

Only published and voided batches exist for a reader: a batch that is still loading (or
being removed after a failed run) is invisible everywhere, and :func:`visible` /
:func:`published` are the conditions other queries (the review queue) use for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
from sqlalchemy import Connection, bindparam, func, or_, select

from finflow_core.lending.terms import BAND_RECOMMENDATION, BatchState, DriftStatus
from finflow_core.pipeline.run import BatchSummary
from finflow_core.store import Store
from finflow_core.store.chunk_rows import EMPTY_REASONS
from finflow_core.store.lending_tables import (
    applications,
    batches,
    drift_runs,
    quarantine_issues,
    quarantine_rows,
    scores,
)
from finflow_core.store.read_ahead import read_ahead


@dataclass(frozen=True)
class BatchRow:
    """One stored batch as listed."""

    id: str
    file_name: str
    uploaded_by: str
    uploaded_at: str
    week_start: str
    model_version: str
    rows_in: int
    rows_valid: int
    rows_quarantined: int
    n_low: int
    n_medium: int
    n_high: int
    automation_rate: float
    expected_profit: float | None  # None: not priced
    drift_status: DriftStatus
    state: BatchState = BatchState.PUBLISHED
    origin: str = "file"
    voided_at: str | None = None
    voided_by: str | None = None
    void_reason: str | None = None


@dataclass(frozen=True)
class DriftRun:
    """PSI of one batch (``kind`` batch) or of a week's typed-in applications (``kind``
    period, no batch): the score's, every feature's, and the bin counts behind them."""

    batch_id: str | None
    model_version: str
    status: DriftStatus
    score_psi: float | None
    features: dict[str, float | None]
    counts: dict[str, list[int]]
    computed_at: str
    week_start: str
    file_name: str
    kind: str = "batch"
    rows: int | None = None


DECISION_EXPORT = ("row_number", "application_id", "probability", "band", "decision", "status",
                   "expected_profit", "loan_amount", "model_version")


VISIBLE_STATES = (BatchState.PUBLISHED, BatchState.VOIDED)


def published(batch_id: Any) -> Any:
    """SQL: ``batch_id`` is a published batch's (the queue and the portfolio count only these)."""
    return batch_id.in_(select(batches.c.id).where(batches.c.state == BatchState.PUBLISHED))


def visible(batch_id: Any) -> Any:
    """SQL: ``batch_id`` is a published or voided batch's (not one still loading)."""
    return batch_id.in_(select(batches.c.id).where(batches.c.state.in_(VISIBLE_STATES)))


def stored_summary(store: Store, batch_id: str) -> BatchSummary | None:
    """The summary of a published or voided batch, or None (also while it is loading)."""
    b = batches.c
    with store.connect() as conn:
        row = conn.execute(select(b.summary, b.state, b.origin, b.uploaded_by, b.uploaded_at,
                                  b.config_sha256, b.voided_at, b.voided_by, b.void_reason)
                           .where(b.id == batch_id).where(b.state.in_(VISIBLE_STATES))).first()
    if row is None:
        return None
    d = json.loads(row.summary)
    d.update(already_stored=True, timings={}, state=row.state, origin=row.origin,
             uploaded_by=row.uploaded_by, uploaded_at=row.uploaded_at,
             config_sha256=row.config_sha256 or "", voided_at=row.voided_at,
             voided_by=row.voided_by, void_reason=row.void_reason)
    d.setdefault("priced", d.get("expected_profit") is not None)
    known = set(BatchSummary.__dataclass_fields__)
    return BatchSummary(**{k: v for k, v in d.items() if k in known})


def find_by_sha(store: Store, sha256: str) -> str | None:
    """The published batch of a file, if any (a voided one does not count: it may be rerun)."""
    with store.connect() as conn:
        return conn.execute(select(batches.c.id).where(batches.c.sha256 == sha256)
                            .where(batches.c.state == BatchState.PUBLISHED)).scalar()


def list_batches(store: Store, limit: int = 100, *, include_voided: bool = True) -> list[BatchRow]:
    """Stored batches, newest first (loading ones are not stored yet)."""
    b = batches.c
    states = VISIBLE_STATES if include_voided else (BatchState.PUBLISHED,)
    with store.connect() as conn:
        rows = conn.execute(
            select(b.id, b.file_name, b.uploaded_by, b.uploaded_at, b.week_start, b.model_version,
                   b.rows_in, b.rows_valid, b.rows_quarantined, b.n_low, b.n_medium, b.n_high,
                   b.automation_rate, b.expected_profit, b.drift_status, b.state, b.origin,
                   b.voided_at, b.voided_by, b.void_reason)
            .where(b.state.in_(states)).order_by(b.uploaded_at.desc()).limit(limit)
        ).all()
    return [BatchRow(*r[:14], DriftStatus(r[14]), BatchState(r[15]), *r[16:]) for r in rows]


def batch_ids(conn: Connection) -> list[str]:
    """Ids of published and voided batches, oldest first."""
    return list(conn.execute(select(batches.c.id).where(batches.c.state.in_(VISIBLE_STATES))
                             .order_by(batches.c.uploaded_at)).scalars())


def iter_decision_frames(store: Store, batch_id: str, reason_codes: int,
                         chunk_rows: int = 100_000) -> Iterator[pd.DataFrame]:
    """The stored decision table of a batch, in row-number order, a chunk at a time (the
    next chunk's rows are read while this one is built and used)."""
    with store.connect() as conn:
        usual = conn.execute(select(batches.c.model_version).where(batches.c.id == batch_id)).scalar()
    for rows in read_ahead(_decision_rows(store, batch_id, usual, chunk_rows)):
        yield _decision_table(rows, reason_codes, usual)


def _decision_rows(store: Store, batch_id: str, usual_version: str | None,
                   chunk_rows: int) -> Iterator[list[Any]]:
    """The decision table's rows as driver tuples, ``chunk_rows`` at a time (by row number).
    Two columns come back NULL in most rows, where Python need not make a string: the
    reasons of an approval ('[]') and the model version when it is the batch's."""
    a = applications.c
    query = (select(a.row_number, a.external_id, a.probability, a.band, a.status, a.expected_profit,
                    a.amount, func.nullif(scores.c.model_version, bindparam("usual")),
                    func.nullif(scores.c.reasons, EMPTY_REASONS))
             .join(scores, scores.c.application_id == a.id)
             .where(a.batch_id == bindparam("batch")).where(a.row_number > bindparam("last"))
             .order_by(a.row_number).limit(chunk_rows))
    last = 0
    while True:
        with store.connect() as conn:
            result = conn.execute(query, {"batch": batch_id, "usual": usual_version, "last": last})
            rows = result.cursor.fetchall()  # plain driver tuples: nothing here needs processing
            result.close()
        if not rows:
            return
        yield rows
        last = int(rows[-1][0])


def decisions_frame(store: Store, batch_id: str, reason_codes: int) -> pd.DataFrame:
    """The stored decision table of a batch: one row per valid application."""
    frames = list(iter_decision_frames(store, batch_id, reason_codes))
    if not frames:
        return pd.DataFrame(columns=decision_columns(reason_codes))
    return pd.concat(frames, ignore_index=True)


def decision_columns(reason_codes: int) -> list[str]:
    return [*DECISION_EXPORT, *(f"reason_{i + 1}" for i in range(reason_codes))]


def _decision_table(rows: Sequence[Any], k: int, usual_version: str | None = None) -> pd.DataFrame:
    """Columns straight from the driver's rows, converted to Arrow in one pass in C (no Python
    loop per row); only the reasons of review and decline cases (the rows that have any) are
    parsed. A NULL model version is ``usual_version`` (see :func:`_decision_rows`)."""
    table = pa.array(rows, type=_ROW_TYPE)
    (row_number, external, probability, band, status, profit, amount, version,
     reasons) = (table.field(i) for i in range(_ROW_TYPE.num_fields))
    if usual_version is not None:
        version = pc.fill_null(version, pa.scalar(usual_version, pa.large_string()))
    texts = _reason_texts(reasons, k)
    return pd.DataFrame({
        "row_number": _numbers(row_number, np.int64),
        "application_id": _text(external),
        "probability": _numbers(probability, float).round(6),
        "band": _text(band),
        "decision": _text(_RECOMMEND.take(pc.index_in(band, value_set=_BAND_NAMES))),
        "status": _text(status),
        "expected_profit": _numbers(profit, float).round(2),  # NULL (not priced): NaN
        "loan_amount": _numbers(amount, float),
        "model_version": _text(version),
        **{f"reason_{j + 1}": _text(texts[j]) for j in range(k)},
    })


#: The decision query's row, as Arrow converts it (reasons NULL where there are none).
_ROW_TYPE = pa.struct([("row_number", pa.int64()), ("external_id", pa.large_string()),
                       ("probability", pa.float64()), ("band", pa.large_string()),
                       ("status", pa.large_string()), ("expected_profit", pa.float64()),
                       ("amount", pa.float64()), ("model_version", pa.large_string()),
                       ("reasons", pa.large_string())])
_BAND_NAMES = pa.array([str(b) for b in BAND_RECOMMENDATION], type=pa.large_string())
_RECOMMEND = pa.array([str(r) for r in BAND_RECOMMENDATION.values()], type=pa.large_string())
#: What the export reads of a row's reasons: the texts, in order (the rest is ignored).
_REASONS_SCHEMA = pa.schema([("r", pa.list_(pa.struct([("text", pa.large_string())])))])
_JSON_OPTIONS = pa_json.ParseOptions(explicit_schema=_REASONS_SCHEMA, unexpected_field_behavior="ignore")
_EMPTY = pa.array([""], type=pa.large_string())
_JSON_LINE, _JSON_LINE_END = ([pa.scalar(t, pa.large_string()) for t in texts]
                              for texts in (['{"r":'], ["}\n", ""]))


def _numbers(values: pa.Array, dtype: Any) -> np.ndarray:
    """A numeric column as numpy (NULL: NaN), as np.asarray made it from the driver's values."""
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=dtype)


def _reason_texts(reasons: pa.Array, k: int) -> list[pa.Array]:
    """The first ``k`` reason texts of every row ("" where a row has fewer), one array each.

    Arrow's JSON reader parses the chunk's reasons in one multi-threaded call (json.loads
    was a third of the export); anything it does not read exactly as json.loads would (a
    reason without a text, a lone surrogate, no list) goes the json.loads way instead.
    """
    n = len(reasons)
    given = pc.and_kleene(pc.is_valid(reasons), pc.not_equal(reasons, EMPTY_REASONS))
    explained = np.flatnonzero(given.to_numpy(zero_copy_only=False))
    if not explained.size:
        return [pa.nulls(n, pa.large_string()).fill_null("") for _ in range(k)]
    chosen = reasons.take(explained)
    lines = pc.binary_join_element_wise(*_JSON_LINE, chosen, *_JSON_LINE_END)  # JSON Lines, in C
    try:
        parsed = pa_json.read_json(pa.BufferReader(_bytes(lines)), parse_options=_JSON_OPTIONS)
    except pa.ArrowInvalid:
        return _reason_texts_json(chosen.to_pylist(), explained, n, k)
    lists = parsed.column("r").combine_chunks()
    found = pc.struct_field(lists.flatten(), "text")
    if len(lists) != explained.size or lists.null_count or found.null_count:
        return _reason_texts_json(chosen.to_pylist(), explained, n, k)
    offsets = lists.offsets.to_numpy()
    starts, lengths = offsets[:-1] - offsets[0], np.diff(offsets)
    found = pa.concat_arrays([found, _EMPTY])  # "" for a row without a j-th reason
    columns = []
    for j in range(k):
        has = lengths > j
        index = np.full(n, len(found) - 1, dtype=np.int64)
        index[explained[has]] = starts[has] + j
        columns.append(found.take(index))
    return columns


def _bytes(text: pa.Array) -> pa.Buffer:
    """The cells of a string array (no nulls) end to end."""
    width = np.int64 if pa.types.is_large_string(text.type) else np.int32
    offsets = np.frombuffer(text.buffers()[1], dtype=width)[text.offset:text.offset + len(text) + 1]
    return text.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


def _reason_texts_json(chosen: list[str], explained: np.ndarray, n: int, k: int) -> list[pa.Array]:
    """The same with json.loads, one reason at a time (and its errors, for a bad reason)."""
    parsed = json.loads("[" + ",".join(chosen) + "]")
    texts = [[""] * n for _ in range(k)]
    for i, found in zip(explained.tolist(), parsed, strict=True):
        for j, reason in enumerate(found[:k]):
            texts[j][i] = reason["text"]
    return [pa.array(t, type=pa.large_string()) for t in texts]


def _text(values: pa.Array) -> Any:
    """A pandas text column on the Arrow array itself (no copy)."""
    return pd.array(values, dtype="str")


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
    q = quarantine_issues.c
    with store.connect() as conn:
        rows = conn.execute(
            select(q.row_number, q.column_name.label("column"), q.rule, q.value, q.message)
            .where(q.batch_id == batch_id).order_by(q.row_number, q.id)
        ).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=["row_number", "column", "rule", "value", "message"])


def drift_history(store: Store, limit: int = 52) -> list[DriftRun]:
    """Drift runs of published file batches and of weeks with enough typed-in applications,
    newest first."""
    d = drift_runs.c
    with store.connect() as conn:
        rows = conn.execute(
            select(d.batch_id, d.model_version, d.status, d.score_psi, d.psi, d.counts, d.computed_at,
                   batches.c.week_start, batches.c.file_name, d.kind, d.period_start, d.rows)
            .select_from(drift_runs.outerjoin(batches, batches.c.id == d.batch_id))
            .where(or_(batches.c.state == BatchState.PUBLISHED,
                       (d.kind == "period") & (d.status != DriftStatus.INSUFFICIENT)))
            .order_by(d.computed_at.desc(), d.id.desc()).limit(limit)
        ).all()
    return [DriftRun(r.batch_id, r.model_version, DriftStatus(r.status), r.score_psi, json.loads(r.psi),
                     json.loads(r.counts), r.computed_at, r.week_start or r.period_start,
                     r.file_name or f"typed-in applications, week of {r.period_start}", r.kind, r.rows)
            for r in rows]
