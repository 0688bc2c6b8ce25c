"""Cases in the store: the review queue, claims, the decision history of an application.

Plain reads and writes inside the caller's transaction; the review service decides who
may do what and when.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, select, update

from finflow_core.lending.authority import ProposalStatus
from finflow_core.lending.terms import Band, DecisionKind, Outcome, Status
from finflow_core.store.batch_queries import published, visible
from finflow_core.store.lending_tables import (
    OPEN_CASES,
    applications,
    batches,
    claims,
    decisions,
    portfolio_rollup,
    proposals,
    scores,
)


@dataclass(frozen=True)
class QueueRow:
    """One open case as the queue lists it.

    ``waiting_hours`` is the time since its batch was stored (the applicant's wait),
    ``overdue`` whether that is past the service level (``review.sla_hours``). A case
    awaiting a second officer carries the proposal (``proposal_id``, who, what).
    """

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
    waiting_hours: float = 0.0
    overdue: bool = False
    proposal_id: int | None = None
    proposed_by: str | None = None
    proposed_outcome: Outcome | None = None


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
    suggestion: Outcome | None = None  # what the model suggested (officers' decisions)
    proposed_by: str | None = None  # four eyes: the first officer (decided_by confirmed)
    four_eyes: str | None = None  # why a second officer was needed (authority, override)


def decision_record(r: Any) -> DecisionRecord:
    suggestion = getattr(r, "suggestion", None)
    return DecisionRecord(r.id, r.application_id, Outcome(r.outcome), DecisionKind(r.kind), r.decided_by,
                          r.reason, r.note, r.decided_at, r.model_version, r.supersedes_id,
                          Outcome(suggestion) if suggestion else None,
                          getattr(r, "proposed_by", None), getattr(r, "four_eyes", None))


# -- the queue ------------------------------------------------------------------------------------

_ARRIVED = batches.c.uploaded_at  # when a case joined the queue: its batch was stored


def on_desk(batch_id: Any = applications.c.batch_id) -> Any:
    """Whether an application's batch puts its case on the desk (queue, counts, next case,
    cases awaiting a second officer). Every condition on the batch belongs here, in one
    place: batch states join here (e.g. only published, non-voided batches), written on
    ``applications.batch_id`` (``batch_id.in_(select(batches.c.id).where(...))``) so that
    no caller needs a join: only published batches (not one still loading, not a voided one).
    ``batch_id`` is the column to test (the roll-ups' own for their counts)."""
    return published(batch_id)


def _open_cases(*statuses: Status) -> list[Any]:
    """Conditions of an open case in the queue (``OPEN_CASES`` as the partial index says it,
    so the planner can use it)."""
    return [applications.c.status.in_(statuses), OPEN_CASES, on_desk()]


def _open_proposal(a: Any) -> Any:
    return and_(proposals.c.application_id == a.id, proposals.c.status == ProposalStatus.OPEN)


def _sort(order: str) -> list[Any]:
    a = applications.c
    return [a.amount.desc(), a.id] if order == "amount" else [a.id]


def queue(conn: Connection, status: Status, order: str, limit: int, offset: int, now: str, *,
          overdue_before: str | None = None, overdue_only: bool = False) -> list[QueueRow]:
    """A page of open cases: the overdue ones (stored before ``overdue_before``) first, each
    part oldest first (cases are numbered as their batches are stored) or largest first."""
    if overdue_before is None:
        return _page(conn, status, order, limit, offset, now, None)
    late = _arrived_before(overdue_before)
    n_late = count_overdue(conn, (status,), overdue_before)
    rows: list[QueueRow] = []
    if offset < n_late:
        rows += _page(conn, status, order, limit, offset, now, late)
    if not overdue_only and len(rows) < limit:
        rows += _page(conn, status, order, limit - len(rows), max(0, offset - n_late), now,
                      ~late)
    stamp = datetime.fromisoformat(now)
    return [_aged(r, stamp, overdue_before) for r in rows]


def _arrived_before(moment: str) -> Any:
    return applications.c.batch_id.in_(select(batches.c.id).where(moment > _ARRIVED))


def count_overdue(conn: Connection, statuses: tuple[Status, ...], overdue_before: str) -> int:
    """Open cases whose batch arrived before ``overdue_before``, from the roll-ups (a case is
    overdue by its batch's arrival, so the per-batch counts answer it without reading the
    applications, a batch still loading included)."""
    r = portfolio_rollup.c
    late = r.batch_id.in_(select(batches.c.id).where(overdue_before > _ARRIVED))
    total = conn.execute(select(func.coalesce(func.sum(r.n), 0)).where(r.status.in_(statuses))
                         .where(on_desk(r.batch_id), late)).scalar_one()
    return int(total)


def _page(conn: Connection, status: Status, order: str, limit: int, offset: int, now: str,
          extra: Any) -> list[QueueRow]:
    a, c, p = applications.c, claims.c, proposals.c
    live = and_(c.application_id == a.id, c.expires_at > now)
    query = (
        select(a.id, a.external_id, a.batch_id, a.amount, a.probability, a.band, a.status, a.week_start,
               a.segment_1, a.segment_2, c.claimed_by, c.claimed_at, c.expires_at, _ARRIVED,
               p.id, p.proposed_by, p.outcome)
        .select_from(applications.outerjoin(claims, live).join(batches, batches.c.id == a.batch_id)
                     .outerjoin(proposals, _open_proposal(a)))
        .where(*_open_cases(status)).order_by(*_sort(order)).limit(limit).offset(offset)
    )
    if extra is not None:
        query = query.where(extra)
    return [_row(r) for r in conn.execute(query).all()]


def _row(r: Any) -> QueueRow:
    return QueueRow(r[0], r[1], r[2], r[3], r[4], Band(r[5]), Status(r[6]), *r[7:14],
                    proposal_id=r[14], proposed_by=r[15],
                    proposed_outcome=Outcome(r[16]) if r[16] else None)


def _aged(row: QueueRow, now: datetime, overdue_before: str | None) -> QueueRow:
    arrived = datetime.fromisoformat(row.uploaded_at)
    hours = max(0.0, (now - arrived).total_seconds() / 3600)
    late = overdue_before is not None and row.uploaded_at < overdue_before
    return replace(row, waiting_hours=hours, overdue=late)


def awaiting(conn: Connection, limit: int, offset: int, now: str, overdue_before: str) -> list[QueueRow]:
    """Cases with a decision awaiting a second officer, oldest proposal first (any status:
    an override of an automatic decision waits here too)."""
    a, c, p = applications.c, claims.c, proposals.c
    live = and_(c.application_id == a.id, c.expires_at > now)
    rows = conn.execute(
        select(a.id, a.external_id, a.batch_id, a.amount, a.probability, a.band, a.status, a.week_start,
               a.segment_1, a.segment_2, c.claimed_by, c.claimed_at, c.expires_at, _ARRIVED,
               p.id, p.proposed_by, p.outcome)
        .select_from(proposals.join(applications, a.id == p.application_id)
                     .join(batches, batches.c.id == a.batch_id).outerjoin(claims, live))
        .where(p.status == ProposalStatus.OPEN, on_desk()).order_by(p.id).limit(limit).offset(offset)
    ).all()
    stamp = datetime.fromisoformat(now)
    return [_aged(_row(r), stamp, overdue_before) for r in rows]


def count_awaiting(conn: Connection) -> int:
    return int(conn.execute(
        select(func.count()).select_from(proposals.join(applications,
                                                        applications.c.id == proposals.c.application_id))
        .where(proposals.c.status == ProposalStatus.OPEN, on_desk())).scalar_one())


def count_by_status(conn: Connection, statuses: tuple[Status, ...]) -> dict[Status, int]:
    """From the roll-ups (exact: kept in step in every decision's transaction), so a count
    over a million applications, some of them still loading, costs a few milliseconds."""
    r = portfolio_rollup.c
    rows = conn.execute(select(r.status, func.sum(r.n)).where(r.status.in_(statuses))
                        .where(on_desk(r.batch_id)).group_by(r.status)).all()
    counts = dict.fromkeys(statuses, 0)
    counts.update({Status(r[0]): int(r[1]) for r in rows})
    return counts


def application(conn: Connection, application_id: int, *, lock: bool = False) -> Any | None:
    """The row (locked for this transaction on PostgreSQL; SQLite's write lock covers it), with
    its batch's state as ``batch_state``; None while its batch is still loading."""
    query = (select(applications, batches.c.state.label("batch_state"))
             .join(batches, batches.c.id == applications.c.batch_id)
             .where(applications.c.id == application_id).where(visible(applications.c.batch_id)))
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
    return conn.execute(select(_ARRIVED).where(batches.c.id == batch_id)).scalar() or ""


def batch_edges(conn: Connection, batch_id: str) -> tuple[float, float]:
    """The band edges (low, high) that routed a batch."""
    row = conn.execute(select(batches.c.low_edge, batches.c.high_edge)
                       .where(batches.c.id == batch_id)).one()
    return float(row.low_edge), float(row.high_edge)


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
                         decision_id: int, kind: DecisionKind, expected_profit: float | None) -> int:
    """Point the application at its new decision if it is still at ``expected``; rows changed."""
    current = applications.c.current_decision_id
    return conn.execute(
        update(applications).where(applications.c.id == application_id)
        .where(current.is_(None) if expected is None else current == expected)
        .values(status=status, current_decision_id=decision_id, decided_kind=kind,
                expected_profit=None if expected_profit is None else float(expected_profit))
    ).rowcount


def declined(conn: Connection, *, batch_id: str | None = None,
             application_id: int | None = None) -> list[Any]:
    """Declined applications with their current decision and stored reasons (one, or a
    batch's in row order): what a decline letter says."""
    a, d, s = applications.c, decisions.c, scores.c
    query = (
        select(a.id, a.external_id, a.batch_id, a.row_number, a.amount, a.data, d.id.label("decision_id"),
               d.kind, d.outcome, d.reason, d.decided_at, s.reasons, _ARRIVED.label("uploaded_at"))
        .select_from(applications.join(decisions, d.id == a.current_decision_id)
                     .join(batches, batches.c.id == a.batch_id)
                     .outerjoin(scores, s.application_id == a.id))
        .where(a.status == Status.DECLINED).order_by(a.batch_id, a.row_number)
    )
    if batch_id is not None:
        query = query.where(a.batch_id == batch_id)
    if application_id is not None:
        query = query.where(a.id == application_id)
    return list(conn.execute(query).all())


def by_external_id(conn: Connection, external_id: str) -> list[int]:
    return list(conn.execute(select(applications.c.id).where(applications.c.external_id == external_id)
                             .where(visible(applications.c.batch_id))
                             .order_by(applications.c.id)).scalars())


def held_by_others(username: str, now: str) -> Any:
    """A subquery: applications someone other than ``username`` holds a live claim on."""
    c = claims.c
    return select(c.application_id).where(and_(c.expires_at > now, c.claimed_by != username))


def next_free(conn: Connection, username: str, order: str, now: str,
              overdue_before: str | None = None) -> int | None:
    """The first pending case nobody else holds and no proposal waits on (the officer's own
    claim counts as free); overdue cases first."""
    a, p = applications.c, proposals.c
    taken = held_by_others(username, now)
    waiting = select(p.application_id).where(p.status == ProposalStatus.OPEN)
    base = (select(a.id).where(*_open_cases(Status.PENDING)).where(a.id.not_in(taken))
            .where(a.id.not_in(waiting)).order_by(*_sort(order)).limit(1))
    if overdue_before is not None:
        late = conn.execute(base.where(_arrived_before(overdue_before))).scalar()
        if late is not None:
            return int(late)
    found = conn.execute(base).scalar()
    return None if found is None else int(found)
