"""Outcomes in the store: linking a file's rows to stored applications, recording them, and
the rows performance by vintage is computed from.

An outcome file's row is sealed (``finflow_core.store.seals``) and so is each outcome, under
ids taken before the insert; the file's ``outcomes_loaded`` entry records the file's seal,
the :class:`~finflow_core.store.seals.SealSum` of its outcomes and their ids (as runs), so
verify names a changed, inserted or deleted outcome."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, and_, func, select

from finflow_core.store import seals
from finflow_core.store.batch_queries import published
from finflow_core.store.bulk import bulk_insert
from finflow_core.store.lending_tables import applications, batches, scores
from finflow_core.store.lifecycle_tables import application_arms, outcome_files, outcomes
from finflow_core.store.row_ids import allocate_ids
from finflow_core.store.tables import iso_utc

_IN_CHUNK = 900  # ids per IN (...) list: below SQLite's variable limit

#: Columns of :func:`performance_rows`.
PERFORMANCE_COLUMNS = ("application_id", "batch_id", "week_start", "uploaded_at", "model_version",
                       "probability", "band", "status", "decided_kind", "amount", "ev_approve",
                       "outcome_id", "defaulted", "observed_on", "amount_lost", "days_past_due",
                       "months_on_book", "exposure", "realised_profit", "arm")


def successor_exists(alias: Any) -> Any:
    later = outcomes.alias("later")
    return select(later.c.id).where(later.c.supersedes_id == alias.c.id).exists()


def current_outcomes() -> Any:
    """A subquery of every application's current outcome (the one nothing supersedes)."""
    o = outcomes.alias("o")
    return select(o).where(~successor_exists(o)).subquery("current_outcome")


@dataclass(frozen=True)
class LinkedApplication:
    id: int
    external_id: str
    batch_id: str
    status: str
    amount: float
    data: str
    week_start: str
    current_outcome_id: int | None
    current_defaulted: bool | None


def link(conn: Connection, external_ids: list[str]) -> dict[str, list[LinkedApplication]]:
    """Every application of a published batch for each external id (several when it was in
    several batches; a voided batch's applications take no outcome)."""
    cur = current_outcomes()
    a = applications.c
    out: dict[str, list[LinkedApplication]] = {}
    unique = sorted(set(external_ids))
    for i in range(0, len(unique), _IN_CHUNK):
        part = unique[i:i + _IN_CHUNK]
        rows = conn.execute(
            select(a.id, a.external_id, a.batch_id, a.status, a.amount, a.data, a.week_start, cur.c.id,
                   cur.c.defaulted)
            .select_from(applications.outerjoin(cur, cur.c.application_id == a.id))
            .where(a.external_id.in_(part)).where(published(a.batch_id)).order_by(a.id)
        ).all()
        for r in rows:
            out.setdefault(r[1], []).append(LinkedApplication(*r[:8], None if r[8] is None else bool(r[8])))
    return out


def insert_file(conn: Connection, sha256: str, file_name: str, loaded_by: str, now: datetime, rows: int,
                corrections: int, reason: str) -> int:
    row = seals.sealed_insert_values(
        conn, outcome_files, sha256=sha256, file_name=file_name[:255], loaded_by=loaded_by,
        loaded_at=iso_utc(now), rows=int(rows), corrections=int(corrections), reason=reason)
    conn.execute(outcome_files.insert().values(**row))
    return int(row["id"])


def file_seal_ref(conn: Connection, file_id: int) -> dict[str, Any]:
    """The outcome file's seal, for its ``outcomes_loaded`` entry (merge it in)."""
    seal = conn.execute(select(outcome_files.c.seal).where(outcome_files.c.id == file_id)).scalar_one()
    return seals.seal_ref("outcome_files", file_id, seal)


def insert_outcomes(conn: Connection, frame: pd.DataFrame) -> dict[str, Any]:
    """Rows with application_id (stored id), file_id, defaulted, observed_on, amount_lost,
    days_past_due, months_on_book, realised_profit, supersedes_id; each sealed under an id
    taken first. Returns what the file's audit entry records of them (their seal sum and
    ids)."""
    n = len(frame)
    columns = {c: frame[c].to_numpy(dtype=object) for c in (
        "application_id", "file_id", "defaulted", "observed_on", "amount_lost", "days_past_due",
        "months_on_book", "exposure", "realised_profit", "supersedes_id")}
    columns["defaulted"] = np.asarray([bool(x) for x in columns["defaulted"]], dtype=object)
    for whole in ("days_past_due", "months_on_book", "supersedes_id"):  # INTEGER columns
        columns[whole] = np.asarray([None if pd.isna(x) else int(x) for x in columns[whole]], dtype=object)
    for real in ("amount_lost", "exposure", "realised_profit"):  # NaN is stored (and sealed) as NULL
        columns[real] = np.asarray([None if pd.isna(x) else float(x) for x in columns[real]], dtype=object)
    ids = allocate_ids(conn, outcomes, n)
    columns = {"id": np.asarray(ids, dtype=np.int64), **columns}
    total = seals.SealSum()
    total.add(seals.add_seals(conn, "outcomes", columns, n))
    bulk_insert(conn, outcomes, columns, n)
    return {"seals": {"outcomes": total.value()}, "outcome_ids": id_runs(ids)}


def id_runs(ids: list[int]) -> list[list[int]]:
    """Ids as ``[first, last]`` runs of consecutive ids (one run when taken together)."""
    runs: list[list[int]] = []
    for i in sorted(ids):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return runs


def file_already_loaded(conn: Connection, sha256: str) -> Any | None:
    return conn.execute(select(outcome_files).where(outcome_files.c.sha256 == sha256)
                        .order_by(outcome_files.c.id.desc()).limit(1)).first()


def performance_rows(conn: Connection, *, batch_ids: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per stored application with its score, decision state and current outcome."""
    a, s, b = applications.c, scores.c, batches.c
    cur = current_outcomes()
    arm = application_arms.c
    query = (
        select(a.id, a.batch_id, a.week_start, b.uploaded_at, s.model_version, a.probability, a.band,
               a.status, a.decided_kind, a.amount, s.ev_approve, cur.c.id, cur.c.defaulted, cur.c.observed_on,
               cur.c.amount_lost, cur.c.days_past_due, cur.c.months_on_book, cur.c.exposure,
               cur.c.realised_profit, arm.arm)
        .select_from(applications.join(scores, s.application_id == a.id).join(batches, b.id == a.batch_id)
                     .outerjoin(cur, cur.c.application_id == a.id)
                     .outerjoin(application_arms, arm.application_id == a.id))
    )
    query = query.where(published(a.batch_id))  # not a batch still loading, nor a voided one
    if batch_ids:
        query = query.where(a.batch_id.in_(batch_ids))
    rows = conn.execute(query.order_by(a.id)).all()
    frame = pd.DataFrame.from_records([tuple(r) for r in rows], columns=list(PERFORMANCE_COLUMNS))
    frame["defaulted"] = pd.to_numeric(frame["defaulted"].astype(object).map({True: 1.0, False: 0.0}), errors="coerce")
    return frame


def outcome_counts(conn: Connection) -> dict[str, int]:
    cur = current_outcomes()
    n = conn.execute(select(func.count()).select_from(cur)).scalar_one()
    d = conn.execute(select(func.count()).select_from(cur).where(and_(cur.c.defaulted.is_(True)))).scalar_one()
    return {"outcomes": int(n), "defaults": int(d)}


def stored_data(conn: Connection, ids: list[int]) -> pd.DataFrame:
    """The cells as submitted of stored applications (one column per input), with batch_id."""
    rows: list[Any] = []
    for i in range(0, len(ids), _IN_CHUNK):
        rows += conn.execute(select(applications.c.batch_id, applications.c.data)
                             .where(applications.c.id.in_(ids[i:i + _IN_CHUNK])).order_by(applications.c.id)).all()
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame([json.loads(r.data) for r in rows])
    frame["batch_id"] = [r.batch_id for r in rows]
    return frame


def decision_paths(conn: Connection, application_ids: list[int]) -> pd.DataFrame:
    """For each application's current (manual) decision, in the order given: who made it
    (``officer``), whether a second officer confirmed it (``four_eyes``) and whether the case
    had been referred before it (``after_referral``)."""
    from finflow_core.lending.terms import Outcome
    from finflow_core.store.lending_tables import decisions

    d = decisions.c
    found: dict[int, tuple[str, bool]] = {}
    referred: set[int] = set()
    for i in range(0, len(application_ids), _IN_CHUNK):
        part = application_ids[i:i + _IN_CHUNK]
        rows = conn.execute(select(applications.c.id, d.decided_by, d.four_eyes)
                            .join(decisions, d.id == applications.c.current_decision_id)
                            .where(applications.c.id.in_(part))).all()
        found.update({int(r[0]): (str(r[1]), r[2] is not None) for r in rows})
        referred.update(int(x) for x in conn.execute(
            select(d.application_id).where(d.application_id.in_(part), d.outcome == Outcome.REFER)
            .where(d.id.not_in(select(applications.c.current_decision_id).where(
                applications.c.id.in_(part), applications.c.current_decision_id.is_not(None))))
        ).scalars())
    return pd.DataFrame({
        "officer": [found.get(int(a), ("", False))[0] for a in application_ids],
        "four_eyes": [found.get(int(a), ("", False))[1] for a in application_ids],
        "after_referral": [int(a) in referred for a in application_ids],
    })
