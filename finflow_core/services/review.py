"""The manual-review queue: claiming cases and recording officers' decisions.

Two officers, one case: opening a case claims it for ``review.claim_minutes``; while the
claim lives nobody else can decide the case. Deciding checks, inside one transaction,
that the case is still undecided (or still at the decision being revised): a decision
is never overwritten; a changed decision is a new record that supersedes the old one,
and the loser of a race is told who decided first.
"""

from __future__ import annotations

import json
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from finflow_core.errors import Conflict, FinFlowError, NotFound
from finflow_core.lending.config import Config
from finflow_core.services.access import require
from finflow_core.services.auth import Principal
from finflow_core.store import Store
from finflow_core.store.audit_chain import append_audit
from finflow_core.store.lending_tables import applications, batches, claims, decisions, scores
from finflow_core.store.rollup import move_application
from finflow_core.store.tables import Clock, iso_utc, parse_utc, utcnow

OUTCOMES = ("approve", "decline", "refer")
STATUS_OF_OUTCOME = {"approve": "approved", "decline": "declined", "refer": "referred"}
MAX_TEXT = 2000


class InvalidDecision(FinFlowError):
    """A decision form that cannot be recorded as given (missing reason, unknown outcome)."""

    exit_code = 2


@dataclass(frozen=True)
class ClaimInfo:
    claimed_by: str
    claimed_at: str
    expires_at: str


@dataclass(frozen=True)
class DecisionRecord:
    id: int
    application_id: int
    outcome: str
    kind: str
    decided_by: str
    reason: str
    note: str
    decided_at: str
    model_version: str | None
    supersedes_id: int | None


@dataclass
class CaseView:
    """Everything an officer sees of one case."""

    application_id: int
    external_id: str
    batch_id: str
    status: str
    band: str
    probability: float
    amount: float
    expected_profit: float
    model_version: str
    data: dict[str, str]
    reasons: list[dict[str, Any]]
    decisions: list[DecisionRecord]
    claim: ClaimInfo | None
    uploaded_at: str
    current_decision_id: int | None = None
    segments: dict[str, str | None] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return self.status in ("pending", "referred")


# -- the queue ----------------------------------------------------------------------------------

def review_queue(
    store: Store, actor: Principal, *, status: str = "pending", order: str = "oldest",
    limit: int = 50, offset: int = 0, clock: Clock = utcnow,
) -> tuple[list[dict[str, Any]], int]:
    """Open cases (pending or referred), oldest first or largest first, and how many wait."""
    require(actor, "view_queue")
    if status not in ("pending", "referred"):
        raise InvalidDecision("the queue shows 'pending' or 'referred' cases", status=status)
    now = iso_utc(clock())
    a, c = applications.c, claims.c
    live = and_(c.application_id == a.id, c.expires_at > now)
    sort = [a.amount.desc(), a.id] if order == "amount" else [a.id]
    query = (
        select(a.id, a.external_id, a.batch_id, a.amount, a.probability, a.band, a.status,
               a.week_start, a.segment_1, a.segment_2, c.claimed_by, c.claimed_at, c.expires_at)
        .select_from(applications.outerjoin(claims, live))
        .where(a.status == status)
        .order_by(*sort).limit(limit).offset(offset)
    )
    with store.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
        total = conn.execute(select(func.count()).select_from(applications).where(a.status == status)).scalar_one()
    return rows, int(total)


def queue_counts(store: Store, actor: Principal) -> dict[str, int]:
    require(actor, "view_queue")
    with store.connect() as conn:
        rows = conn.execute(
            select(applications.c.status, func.count())
            .where(applications.c.status.in_(("pending", "referred")))
            .group_by(applications.c.status)
        ).all()
    counts = {"pending": 0, "referred": 0}
    counts.update({r[0]: int(r[1]) for r in rows})
    return counts


# -- claims ---------------------------------------------------------------------------------------

def claim_case(
    store: Store, actor: Principal, application_id: int, config: Config, *, clock: Clock = utcnow
) -> ClaimInfo:
    """Claim an open case for this officer; refused while someone else's claim lives."""
    require(actor, "claim_case")
    now = clock()
    expires = now + timedelta(minutes=config.review.claim_minutes)
    with store.begin() as conn:
        app = _locked_application(conn, application_id)
        if app.status not in ("pending", "referred"):
            raise _decided_conflict(conn, app)
        held = conn.execute(select(claims).where(claims.c.application_id == application_id)).first()
        if held is not None and held.claimed_by != actor.username and parse_utc(held.expires_at) > now:
            raise _claim_conflict(held)
        if held is not None:
            conn.execute(delete(claims).where(claims.c.application_id == application_id))
        info = ClaimInfo(actor.username, iso_utc(now), iso_utc(expires))
        conn.execute(claims.insert().values(application_id=application_id, **info.__dict__))
        if held is None or held.claimed_by != actor.username:
            append_audit(conn, actor.username, "case_claimed", "application", app.external_id,
                         {"application": application_id, "expires_at": info.expires_at,
                          "taken_over_from": held.claimed_by if held is not None else None},
                         at=now)
    return info


def release_claim(store: Store, actor: Principal, application_id: int) -> None:
    """Give a case back to the queue (only the holder can)."""
    require(actor, "claim_case")
    with store.begin() as conn:
        conn.execute(delete(claims).where(and_(claims.c.application_id == application_id,
                                               claims.c.claimed_by == actor.username)))


# -- deciding -------------------------------------------------------------------------------------

def decide_case(
    store: Store,
    actor: Principal,
    application_id: int,
    outcome: str,
    reason: str = "",
    note: str = "",
    *,
    supersedes: int | None = None,
    clock: Clock = utcnow,
) -> DecisionRecord:
    """Record an officer's decision; ``supersedes`` names the decision being revised.

    Without ``supersedes`` the case must still be pending; a referred case (or a decision
    being changed) is decided by passing the current decision's id, as the officer saw it.
    Raises :class:`Conflict` naming who decided first when anything changed meanwhile.
    """
    require(actor, "decide_case")
    outcome, reason, note = _check_form(outcome, reason, note)
    now = clock()
    try:
        with store.begin() as conn:
            app = _locked_application(conn, application_id)
            held = conn.execute(select(claims).where(claims.c.application_id == application_id)).first()
            if held is not None and held.claimed_by != actor.username and parse_utc(held.expires_at) > now:
                raise _claim_conflict(held)
            expected = app.current_decision_id
            if supersedes is None:
                # only a pending case takes a first decision; a referred one is decided by
                # naming the referral, so nobody overrides a referral they have not seen
                if app.status != "pending":
                    raise _decided_conflict(conn, app)
            elif supersedes != expected:
                raise _decided_conflict(conn, app, f"decision {supersedes} is no longer the current one")
            score = conn.execute(select(scores).where(scores.c.application_id == application_id)).first()
            version = score.model_version if score is not None else None
            decision_id = conn.execute(decisions.insert().values(
                application_id=application_id, outcome=outcome, kind="manual",
                decided_by=actor.username, reason=reason, note=note, decided_at=iso_utc(now),
                model_version=version, supersedes_id=supersedes,
            ).returning(decisions.c.id)).scalar_one()
            profit = {"approve": score.ev_approve if score else 0.0, "decline": 0.0,
                      "refer": score.ev_review if score else 0.0}[outcome]
            move_application(conn, app, STATUS_OF_OUTCOME[outcome], "manual", float(profit))
            changed = conn.execute(
                update(applications)
                .where(applications.c.id == application_id)
                .where(applications.c.current_decision_id.is_(None) if expected is None
                       else applications.c.current_decision_id == expected)
                .values(status=STATUS_OF_OUTCOME[outcome], current_decision_id=decision_id,
                        decided_kind="manual", expected_profit=float(profit))
            ).rowcount
            if changed != 1:  # someone else got there between our read and write
                raise _decided_conflict(conn, app)
            conn.execute(delete(claims).where(claims.c.application_id == application_id))
            append_audit(conn, actor.username, "case_decided", "application", app.external_id, {
                "application": application_id, "decision": decision_id, "outcome": outcome,
                "reason": reason, "note": note, "supersedes": supersedes,
                "probability": app.probability, "band": app.band,
            }, model_version=version, at=now)
    except IntegrityError as exc:
        if "decisions" not in str(exc.orig):
            raise
        # the database's own guard (one decision per case, one successor per decision) caught a race
        with store.connect() as conn:
            app = _application(conn, application_id)
            raise _decided_conflict(conn, app) from None
    return DecisionRecord(decision_id, application_id, outcome, "manual", actor.username, reason,
                          note, iso_utc(now), version, supersedes)


def open_case(
    store: Store, actor: Principal, application_id: int, config: Config, *, claim: bool = True,
    clock: Clock = utcnow,
) -> CaseView:
    """The case as an officer sees it; claims it first when it is open and free."""
    require(actor, "view_queue")
    if claim:
        with suppress(Conflict):  # a held or decided case is shown as such
            claim_case(store, actor, application_id, config, clock=clock)
    return case_view(store, actor, application_id, config, clock=clock)


def case_view(
    store: Store, actor: Principal, application_id: int, config: Config, *, clock: Clock = utcnow
) -> CaseView:
    require(actor, "view_queue")
    now = iso_utc(clock())
    with store.connect() as conn:
        app = _application(conn, application_id)
        score = conn.execute(select(scores).where(scores.c.application_id == application_id)).first()
        uploaded = conn.execute(select(batches.c.uploaded_at).where(batches.c.id == app.batch_id)).scalar()
        held = conn.execute(select(claims).where(and_(claims.c.application_id == application_id,
                                                      claims.c.expires_at > now))).first()
        history = [_record(r) for r in conn.execute(
            select(decisions).where(decisions.c.application_id == application_id).order_by(decisions.c.id))]
    segs = {name: getattr(app, f"segment_{i + 1}") for i, name in enumerate(config.segments)}
    return CaseView(
        application_id=app.id, external_id=app.external_id, batch_id=app.batch_id,
        status=app.status, band=app.band, probability=app.probability, amount=app.amount,
        expected_profit=app.expected_profit,
        model_version=score.model_version if score else "", data=json.loads(app.data),
        reasons=json.loads(score.reasons) if score else [], decisions=history,
        claim=ClaimInfo(held.claimed_by, held.claimed_at, held.expires_at) if held else None,
        uploaded_at=uploaded or "", current_decision_id=app.current_decision_id, segments=segs,
    )


def find_applications(store: Store, actor: Principal, external_id: str) -> list[int]:
    """Stored application ids for an application id as submitted (one per batch it was in)."""
    require(actor, "view_queue")
    with store.connect() as conn:
        return list(conn.execute(select(applications.c.id).where(applications.c.external_id == external_id)
                                 .order_by(applications.c.id)).scalars())


def next_case(store: Store, actor: Principal, *, order: str = "oldest", clock: Clock = utcnow) -> int | None:
    """The first pending case nobody else holds (the officer's own claim counts as free)."""
    require(actor, "view_queue")
    now = iso_utc(clock())
    a, c = applications.c, claims.c
    taken = select(c.application_id).where(and_(c.expires_at > now, c.claimed_by != actor.username))
    sort = [a.amount.desc(), a.id] if order == "amount" else [a.id]
    with store.connect() as conn:
        return conn.execute(
            select(a.id).where(a.status == "pending").where(a.id.not_in(taken)).order_by(*sort).limit(1)
        ).scalar()


# -- helpers ---------------------------------------------------------------------------------------

def _check_form(outcome: str, reason: str, note: str) -> tuple[str, str, str]:
    outcome = (outcome or "").strip().lower()
    reason, note = (reason or "").strip(), (note or "").strip()
    if outcome not in OUTCOMES:
        raise InvalidDecision(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}",
                              field="outcome")
    if outcome == "decline" and not reason:
        raise InvalidDecision("a decline needs a reason: pick a reason code or write one", field="reason")
    if outcome == "refer" and not note:
        raise InvalidDecision("a referral needs a note saying what to look at", field="note")
    if len(reason) > MAX_TEXT or len(note) > MAX_TEXT:
        raise InvalidDecision(f"reason and note are limited to {MAX_TEXT} characters", field="note")
    return outcome, reason, note


def _application(conn: Connection, application_id: int) -> Any:
    row = conn.execute(select(applications).where(applications.c.id == application_id)).first()
    if row is None:
        raise NotFound(f"no application {application_id}", application=application_id)
    return row


def _locked_application(conn: Connection, application_id: int) -> Any:
    """The row, locked for this transaction on PostgreSQL (SQLite's write lock covers it)."""
    row = conn.execute(
        select(applications).where(applications.c.id == application_id).with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"no application {application_id}", application=application_id)
    return row


def _claim_conflict(held: Any) -> Conflict:
    return Conflict(
        f"case is being reviewed by {held.claimed_by} since {held.claimed_at[:16].replace('T', ' ')} UTC "
        f"(claim expires {held.expires_at[11:16]} UTC)",
        reason="claimed", claimed_by=held.claimed_by, claimed_at=held.claimed_at,
        expires_at=held.expires_at,
    )


def _decided_conflict(conn: Connection, app: Any, why: str = "") -> Conflict:
    current = conn.execute(
        select(decisions).where(decisions.c.application_id == app.id).order_by(decisions.c.id.desc()).limit(1)
    ).first()
    if current is None:
        return Conflict(f"case {app.external_id} changed meanwhile: reload it", reason="changed")
    who = current.decided_by
    kind = "automatically" if current.kind == "auto" else f"by {who}"
    return Conflict(
        f"case {app.external_id} was already decided {kind}: {current.outcome} at "
        f"{current.decided_at[:16].replace('T', ' ')} UTC" + (f" ({why})" if why else ""),
        reason="decided", decided_by=who, outcome=current.outcome, decision_id=current.id,
        decided_at=current.decided_at,
    )


def _record(r: Any) -> DecisionRecord:
    return DecisionRecord(r.id, r.application_id, r.outcome, r.kind, r.decided_by, r.reason, r.note,
                          r.decided_at, r.model_version, r.supersedes_id)
