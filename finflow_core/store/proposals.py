"""Decisions awaiting a second officer (four eyes): reads and writes inside the caller's
transaction. The review service decides when a proposal is needed and who may close it.

Each row is sealed (``finflow_core.store.seals``) when it is written and again when it is
closed; the audit event of each write records the new seal (:func:`seal_ref`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, or_, select, update

from finflow_core.lending.authority import ProposalStatus, SecondLook, parse_needs
from finflow_core.lending.terms import Outcome
from finflow_core.store import cases, seals
from finflow_core.store.lending_tables import applications, proposals


@dataclass(frozen=True)
class Proposal:
    """A decision one officer made that a second officer must confirm."""

    id: int
    application_id: int
    outcome: Outcome
    reason: str
    note: str
    supersedes_id: int | None
    proposed_by: str
    proposed_at: str
    needs: tuple[SecondLook, ...]
    amount: float
    probability: float
    suggestion: Outcome
    authority_limit: float | None
    status: ProposalStatus
    closed_by: str | None = None
    closed_at: str | None = None
    close_note: str = ""
    decision_id: int | None = None

    @property
    def is_open(self) -> bool:
        return self.status is ProposalStatus.OPEN


def _proposal(r: Any) -> Proposal:
    return Proposal(
        r.id, r.application_id, Outcome(r.outcome), r.reason, r.note, r.supersedes_id, r.proposed_by,
        r.proposed_at, parse_needs(r.needs), float(r.amount), float(r.probability), Outcome(r.suggestion),
        None if r.authority_limit is None else float(r.authority_limit), ProposalStatus(r.status),
        r.closed_by, r.closed_at, r.close_note or "", r.decision_id,
    )


def insert(conn: Connection, **values: Any) -> int:
    """A new open proposal (sealed: its id is taken first, the seal covers it)."""
    row = seals.sealed_insert_values(conn, proposals, **{
        "status": ProposalStatus.OPEN, "closed_by": None, "closed_at": None, "close_note": "",
        "decision_id": None, **values})
    conn.execute(proposals.insert().values(**row))
    return int(row["id"])


def seal_ref(conn: Connection, proposal_id: int) -> dict[str, Any]:
    """The row's current seal, for the audit event that records the write (merge it in)."""
    seal = conn.execute(select(proposals.c.seal).where(proposals.c.id == proposal_id)).scalar_one()
    return seals.seal_ref("proposals", proposal_id, seal)


def checked(conn: Connection, proposal_id: int) -> Proposal | None:
    """:func:`get`, refusing a row that fails its seal (before a decision is made of it)."""
    row = conn.execute(select(proposals).where(proposals.c.id == proposal_id)).first()
    if row is None:
        return None
    seals.check_seal(conn, "proposals", row, "the proposed decision")
    return _proposal(row)


def get(conn: Connection, proposal_id: int) -> Proposal | None:
    row = conn.execute(select(proposals).where(proposals.c.id == proposal_id)).first()
    return None if row is None else _proposal(row)


def open_for(conn: Connection, application_id: int) -> Proposal | None:
    """The application's open proposal, if one waits."""
    row = conn.execute(select(proposals).where(proposals.c.application_id == application_id)
                       .where(proposals.c.status == ProposalStatus.OPEN)).first()
    return None if row is None else _proposal(row)


def history(conn: Connection, application_id: int) -> list[Proposal]:
    rows = conn.execute(select(proposals).where(proposals.c.application_id == application_id)
                        .order_by(proposals.c.id))
    return [_proposal(r) for r in rows]


def close(conn: Connection, proposal_id: int, status: ProposalStatus, *, by: str, at: str,
          note: str = "", decision_id: int | None = None) -> int:
    """Close an open proposal and seal it again; rows changed (0: it was closed meanwhile)."""
    changed = conn.execute(
        update(proposals).where(proposals.c.id == proposal_id)
        .where(proposals.c.status == ProposalStatus.OPEN)
        .values(status=status, closed_by=by, closed_at=at, close_note=note, decision_id=decision_id)
    ).rowcount
    if changed:
        row = conn.execute(select(proposals).where(proposals.c.id == proposal_id)).mappings().one()
        conn.execute(update(proposals).where(proposals.c.id == proposal_id)
                     .values(seal=seals.seal_row(seals.key_of(conn), "proposals", row)))
    return changed


def first_confirmable(conn: Connection, username: str, authority: float | None,
                      limited: tuple[Outcome, ...], excluded: Any) -> int | None:
    """The application of the oldest open proposal ``username`` may confirm: not their
    own, and (for outcomes a limit applies to) within their ``authority`` (None: no cap)."""
    p = proposals.c
    on_desk = select(applications.c.id).where(cases.on_desk())
    query = (select(p.application_id).where(p.status == ProposalStatus.OPEN)
             .where(p.proposed_by != username).where(p.application_id.not_in(excluded))
             .where(p.application_id.in_(on_desk)))
    if authority is not None:
        query = query.where(or_(p.outcome.not_in([str(o) for o in limited]),
                                and_(p.amount <= authority)))
    found = conn.execute(query.order_by(p.id).limit(1)).scalar()
    return None if found is None else int(found)
