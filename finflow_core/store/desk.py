"""The desk's figures from the decision record: an officer's day and the override rate.

Officers' decisions are few among a million automatic ones: every query here starts from
``ix_decisions_kind`` (kind, decided_at).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, and_, case, func, select

from finflow_core.lending.authority import ProposalStatus
from finflow_core.lending.terms import DecisionKind, Outcome
from finflow_core.store.lending_tables import decisions, proposals


@dataclass(frozen=True)
class DayCounts:
    """What one officer did since a moment (their own decisions by outcome, decisions they
    confirmed for a colleague, and their proposals still waiting for one)."""

    approved: int = 0
    declined: int = 0
    referred: int = 0
    confirmed_for_others: int = 0
    awaiting_second: int = 0

    @property
    def decided(self) -> int:
        return self.approved + self.declined + self.referred


def day_counts(conn: Connection, username: str, since: str) -> DayCounts:
    d, p = decisions.c, proposals.c
    owner = func.coalesce(d.proposed_by, d.decided_by)
    mine = conn.execute(
        select(d.outcome, func.count()).where(d.kind == DecisionKind.MANUAL, d.decided_at >= since)
        .where(owner == username).group_by(d.outcome)
    ).all()
    by = {Outcome(o): int(n) for o, n in mine}
    confirmed = conn.execute(
        select(func.count()).select_from(decisions)
        .where(d.kind == DecisionKind.MANUAL, d.decided_at >= since, d.decided_by == username,
               d.proposed_by.is_not(None))
    ).scalar_one()
    waiting = conn.execute(select(func.count()).select_from(proposals).where(
        p.status == ProposalStatus.OPEN, p.proposed_by == username)).scalar_one()
    return DayCounts(by.get(Outcome.APPROVE, 0), by.get(Outcome.DECLINE, 0), by.get(Outcome.REFER, 0),
                     int(confirmed), int(waiting))


@dataclass(frozen=True)
class OverrideCount:
    """One officer's (or everyone's) final manual decisions against the model's suggestion."""

    officer: str
    decisions: int  # manual approve / decline decisions that recorded the model's suggestion
    approved_against: int  # approved where the model suggested decline (low-side)
    declined_against: int  # declined where the model suggested approve (high-side)
    four_eyes: int  # of the decisions, those confirmed by a second officer

    @property
    def overrides(self) -> int:
        return self.approved_against + self.declined_against

    @property
    def rate(self) -> float | None:
        return self.overrides / self.decisions if self.decisions else None


def override_counts(conn: Connection, since: str | None = None,
                    until: str | None = None) -> list[OverrideCount]:
    """Per officer (the one who made the call: the proposer when a second confirmed it)."""
    d = decisions.c
    owner = func.coalesce(d.proposed_by, d.decided_by).label("owner")
    final = d.outcome.in_([Outcome.APPROVE, Outcome.DECLINE])
    conds = [d.kind == DecisionKind.MANUAL, final, d.suggestion.is_not(None)]
    if since:
        conds.append(d.decided_at >= since)
    if until:
        conds.append(d.decided_at < until)
    low = func.sum(case((and_(d.outcome == Outcome.APPROVE, d.suggestion == Outcome.DECLINE), 1),
                        else_=0))
    high = func.sum(case((and_(d.outcome == Outcome.DECLINE, d.suggestion == Outcome.APPROVE), 1),
                         else_=0))
    confirmed = func.sum(case((d.proposed_by.is_not(None), 1), else_=0))
    rows = conn.execute(select(owner, func.count(), low, high, confirmed).where(*conds)
                        .group_by(owner).order_by(owner)).all()
    return [OverrideCount(r[0], int(r[1]), int(r[2] or 0), int(r[3] or 0), int(r[4] or 0))
            for r in rows]
