"""Cases in the store: the review queue, claims, the decision history of an application.

Plain reads and writes inside the caller's transaction; the review service decides who
may do what and when.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, delete, func, select, update

from finflow_core.lending.terms import Band, DecisionKind, Outcome, Status
from finflow_core.store.lending_tables import applications, batches, claims, decisions, scores


@dataclass(frozen=True)
class QueueRow:
    """One open case as the queue lists it."""

    id: int
    external_id: str
    batch_id: str
    amount: float
    probability: float
    band: Band
    status: Status
    week_start: str
    segment_1: str | None
    segment_2: str | None
    claimed_by: str | None
    claimed_at: str | None
    expires_at: str | None
    uploaded_at: str


@dataclass(frozen=True)
class ClaimInfo:
    claimed_by: str
    claimed_at: str
    expires_at: str


@dataclass(frozen=True)
class DecisionRecord:
    id: int
    application_id: int
    outcome: Outcome
    kind: DecisionKind
    decided_by: str
    reason: str
    note: str
    decided_at: str
    model_version: str | None
    supersedes_id: int | None


def decision_record(r: Any) -> DecisionRecord:
    return DecisionRecord(r.id, r.application_id, Outcome(r.outcome), DecisionKind(r.kind), r.decided_by,
                          r.reason, r.note, r.decided_at, r.model_version, r.supersedes_id)


def queue(conn: Connection, status: Status, order: str, limit: int, offset: int, now: str) -> list[QueueRow]:
    a, c = applications.c, claims.c
    live = and_(c.application_id == a.id, c.expires_at > now)
    sort = [a.amount.desc(), a.id] if order == "amount" else [a.id]
    rows = conn.execute(
        select(a.id, a.external_id, a.batch_id, a.amount, a.probability, a.band, a.status, a.week_start,
               a.segment_1, a.segment_2, c.claimed_by, c.claimed_at, c.expires_at, batches.c.uploaded_at)
        .select_from(applications.outerjoin(claims, live).join(batches, batches.c.id == a.batch_id))
        .where(a.status == status).order_by(*sort).limit(limit).offset(offset)
    ).all()
    return [QueueRow(r[0], r[1], r[2], r[3], r[4], Band(r[5]), Status(r[6]), *r[7:]) for r in rows]


def count_by_status(conn: Connection, statuses: tuple[Status, ...]) -> dict[Status, int]:
    rows = conn.execute(select(applications.c.status, func.count())
                        .where(applications.c.status.in_(statuses)).group_by(applications.c.status)).all()
    counts = dict.fromkeys(statuses, 0)
    counts.update({Status(r[0]): int(r[1]) for r in rows})
    return counts


def application(conn: Connection, application_id: int, *, lock: bool = False) -> Any | None:
    """The row (locked for this transaction on PostgreSQL; SQLite's write lock covers it)."""
    query = select(applications).where(applications.c.id == application_id)
    return conn.execute(query.with_for_update() if lock else query).first()


def first_application_of_batch(conn: Connection, batch_id: str) -> Any | None:
    return conn.execute(
        select(applications.c.id, applications.c.probability, applications.c.band,
               applications.c.expected_profit, scores.c.reasons)
        .join(scores, scores.c.application_id == applications.c.id)
        .where(applications.c.batch_id == batch_id).order_by(applications.c.id).limit(1)
    ).first()


def score(conn: Connection, application_id: int) -> Any | None:
    return conn.execute(select(scores).where(scores.c.application_id == application_id)).first()


def reasons(row: Any) -> list[dict[str, Any]]:
    return json.loads(row.reasons) if row is not None else []


def batch_of(conn: Connection, batch_id: str) -> Any | None:
    """The batch row (file name, who uploaded it and when) of an application."""
    return conn.execute(select(batches.c.id, batches.c.file_name, batches.c.uploaded_at, batches.c.uploaded_by)
                        .where(batches.c.id == batch_id)).first()


def uploaded_at(conn: Connection, batch_id: str) -> str:
    return conn.execute(select(batches.c.uploaded_at).where(batches.c.id == batch_id)).scalar() or ""


def claim(conn: Connection, application_id: int, *, live_at: str | None = None) -> ClaimInfo | None:
    query = select(claims).where(claims.c.application_id == application_id)
    if live_at is not None:
        query = query.where(claims.c.expires_at > live_at)
    row = conn.execute(query).first()
    return None if row is None else ClaimInfo(row.claimed_by, row.claimed_at, row.expires_at)


def put_claim(conn: Connection, application_id: int, info: ClaimInfo) -> None:
    conn.execute(delete(claims).where(claims.c.application_id == application_id))
    conn.execute(claims.insert().values(application_id=application_id, claimed_by=info.claimed_by,
                                        claimed_at=info.claimed_at, expires_at=info.expires_at))


def drop_claim(conn: Connection, application_id: int, holder: str | None = None) -> None:
    cond = claims.c.application_id == application_id
    if holder is not None:
        cond = and_(cond, claims.c.claimed_by == holder)
    conn.execute(delete(claims).where(cond))


def history(conn: Connection, application_id: int) -> list[DecisionRecord]:
    rows = conn.execute(select(decisions).where(decisions.c.application_id == application_id)
                        .order_by(decisions.c.id))
    return [decision_record(r) for r in rows]


def latest_decision(conn: Connection, application_id: int) -> DecisionRecord | None:
    row = conn.execute(select(decisions).where(decisions.c.application_id == application_id)
                       .order_by(decisions.c.id.desc()).limit(1)).first()
    return None if row is None else decision_record(row)


def insert_decision(conn: Connection, **values: Any) -> int:
    return int(conn.execute(decisions.insert().values(**values).returning(decisions.c.id)).scalar_one())


def set_current_decision(conn: Connection, application_id: int, expected: int | None, *, status: Status,
                         decision_id: int, kind: DecisionKind, expected_profit: float) -> int:
    """Point the application at its new decision if it is still at ``expected``; rows changed."""
    current = applications.c.current_decision_id
    return conn.execute(
        update(applications).where(applications.c.id == application_id)
        .where(current.is_(None) if expected is None else current == expected)
        .values(status=status, current_decision_id=decision_id, decided_kind=kind,
                expected_profit=float(expected_profit))
    ).rowcount


def by_external_id(conn: Connection, external_id: str) -> list[int]:
    return list(conn.execute(select(applications.c.id).where(applications.c.external_id == external_id)
                             .order_by(applications.c.id)).scalars())


def next_free(conn: Connection, username: str, order: str, now: str) -> int | None:
    """The first pending case nobody else holds (the officer's own claim counts as free)."""
    a, c = applications.c, claims.c
    taken = select(c.application_id).where(and_(c.expires_at > now, c.claimed_by != username))
    sort = [a.amount.desc(), a.id] if order == "amount" else [a.id]
    return conn.execute(select(a.id).where(a.status == Status.PENDING).where(a.id.not_in(taken))
                        .order_by(*sort).limit(1)).scalar()
