"""The manual-review desk: the queue, claiming cases and recording officers' decisions.

Two officers, one case: opening a case claims it for ``review.claim_minutes``; while the
claim lives nobody else can decide it. Deciding checks, inside one transaction, that the
case is still undecided (or still at the decision being revised): a decision is never
overwritten; a changed decision is a new record that supersedes the old one, and the
loser of a race is told who decided first.
"""

from __future__ import annotations

import json
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from finflow_core.errors import Conflict, InvalidInput, NotFound
from finflow_core.lending.terms import (
    OPEN_STATUSES,
    STATUS_OF_OUTCOME,
    Band,
    DecisionKind,
    Outcome,
    Status,
)
from finflow_core.services.access import Action
from finflow_core.services.applications import CaseExplanation, explain_record
from finflow_core.services.models import load_version, version_engine
from finflow_core.services.workbench import Service
from finflow_core.store import cases
from finflow_core.store.audit_chain import append_audit
from finflow_core.store.cases import ClaimInfo, DecisionRecord, QueueRow
from finflow_core.store.lending_tables import decisions
from finflow_core.store.rollup import move_application
from finflow_core.store.seals import seal_ref, sealed_insert_values
from finflow_core.store.tables import iso_utc, parse_utc

MAX_TEXT = 2000


class QueueOrder(StrEnum):
    OLDEST = "oldest"
    AMOUNT = "amount"


class InvalidDecision(InvalidInput):
    """A decision form that cannot be recorded as given (missing reason, unknown outcome)."""


@dataclass(frozen=True)
class QueuePage:
    rows: list[QueueRow]
    total: int


@dataclass
class CaseView:
    """Everything an officer sees of one case."""

    application_id: int
    external_id: str
    batch_id: str
    status: Status
    band: Band
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
        return self.status in OPEN_STATUSES


class ReviewService(Service):
    """Officers work the queue; managers may look."""

    def queue(self, status: Status | str = Status.PENDING, order: QueueOrder | str = QueueOrder.OLDEST,
              limit: int = 50, offset: int = 0) -> QueuePage:
        """Open cases (pending or referred), oldest first or largest first, and how many wait."""
        self.require(Action.VIEW_QUEUE)
        try:
            status = Status(status)
        except ValueError:
            status = None  # type: ignore[assignment]
        if status not in OPEN_STATUSES:
            raise InvalidDecision("the queue shows 'pending' or 'referred' cases", field="status")
        now = iso_utc(self.ctx.clock())
        with self.ctx.store.connect() as conn:
            rows = cases.queue(conn, status, QueueOrder(order), limit, offset, now)
            total = cases.count_by_status(conn, (status,))[status]
        return QueuePage(rows, total)

    def counts(self) -> dict[Status, int]:
        """How many cases are pending and referred."""
        self.require(Action.VIEW_QUEUE)
        with self.ctx.store.connect() as conn:
            return cases.count_by_status(conn, OPEN_STATUSES)

    def claim(self, application_id: int) -> ClaimInfo:
        """Claim an open case for this officer; refused while someone else's claim lives."""
        self.require(Action.CLAIM_CASE)
        now = self.ctx.clock()
        expires = now + timedelta(minutes=self.ctx.config.review.claim_minutes)
        me = self.actor.username
        with self.ctx.store.begin() as conn:
            app = _application(conn, application_id, lock=True)
            if app.status not in OPEN_STATUSES:
                raise _decided_conflict(conn, app)
            held = cases.claim(conn, application_id)
            if held is not None and held.claimed_by != me and parse_utc(held.expires_at) > now:
                raise _claim_conflict(held)
            info = ClaimInfo(me, iso_utc(now), iso_utc(expires))
            cases.put_claim(conn, application_id, info)
            if held is None or held.claimed_by != me:
                append_audit(conn, me, "case_claimed", "application", app.external_id,
                             {"application": application_id, "expires_at": info.expires_at,
                              "taken_over_from": held.claimed_by if held is not None else None}, at=now)
        return info

    def release(self, application_id: int) -> None:
        """Give a case back to the queue (only the holder can)."""
        self.require(Action.CLAIM_CASE)
        with self.ctx.store.begin() as conn:
            cases.drop_claim(conn, application_id, self.actor.username)

    def decide(self, application_id: int, outcome: Outcome | str, reason: str = "", note: str = "", *,
               supersedes: int | None = None) -> DecisionRecord:
        """Record an officer's decision; ``supersedes`` names the decision being revised.

        Without ``supersedes`` the case must still be pending; a referred case (or a decision
        being changed) is decided by passing the current decision's id, as the officer saw it.
        Raises :class:`Conflict` naming who decided first when anything changed meanwhile.
        """
        self.require(Action.DECIDE_CASE)
        outcome, reason, note = _check_form(outcome, reason, note)
        now = self.ctx.clock()
        me = self.actor.username
        try:
            with self.ctx.store.begin() as conn:
                app = _application(conn, application_id, lock=True)
                held = cases.claim(conn, application_id)
                if held is not None and held.claimed_by != me and parse_utc(held.expires_at) > now:
                    raise _claim_conflict(held)
                expected = app.current_decision_id
                if supersedes is None:
                    # only a pending case takes a first decision; a referred one is decided by
                    # naming the referral, so nobody overrides a referral they have not seen
                    if app.status != Status.PENDING:
                        raise _decided_conflict(conn, app)
                elif supersedes != expected:
                    raise _decided_conflict(conn, app, f"decision {supersedes} is no longer the current one")
                score = cases.score(conn, application_id)
                version = score.model_version if score is not None else None
                sealed = sealed_insert_values(  # a fresh id and the keyed seal of the row
                    conn, decisions, application_id=application_id, outcome=outcome,
                    kind=DecisionKind.MANUAL, decided_by=me, reason=reason, note=note,
                    decided_at=iso_utc(now), model_version=version, supersedes_id=supersedes,
                )
                decision_id = cases.insert_decision(conn, **sealed)
                profit = {Outcome.APPROVE: score.ev_approve if score else 0.0, Outcome.DECLINE: 0.0,
                          Outcome.REFER: score.ev_review if score else 0.0}[outcome]
                status = STATUS_OF_OUTCOME[outcome]
                move_application(conn, app, status, DecisionKind.MANUAL, float(profit))
                changed = cases.set_current_decision(conn, application_id, expected, status=status,
                                                     decision_id=decision_id, kind=DecisionKind.MANUAL,
                                                     expected_profit=float(profit))
                if changed != 1:  # someone else got there between our read and write
                    raise _decided_conflict(conn, app)
                cases.drop_claim(conn, application_id)
                append_audit(conn, me, "case_decided", "application", app.external_id, {
                    "application": application_id, "decision": decision_id, "outcome": outcome,
                    "reason": reason, "note": note, "supersedes": supersedes,
                    "probability": app.probability, "band": app.band,
                    **seal_ref("decisions", decision_id, sealed["seal"]),
                }, model_version=version, at=now)
        except IntegrityError as exc:
            if "decisions" not in str(exc.orig):
                raise
            # the database's own guard (one decision per case, one successor each) caught a race
            with self.ctx.store.connect() as conn:
                raise _decided_conflict(conn, _application(conn, application_id)) from None
        return DecisionRecord(decision_id, application_id, outcome, DecisionKind.MANUAL, me, reason, note,
                              iso_utc(now), version, supersedes)

    def open(self, application_id: int, *, claim: bool = True) -> CaseView:
        """The case as an officer sees it; claims it first when it is open and free."""
        self.require(Action.VIEW_QUEUE)
        if claim and self.wb.can(Action.CLAIM_CASE):
            with suppress(Conflict):  # a held or decided case is shown as such
                self.claim(application_id)
        return self.case(application_id)

    def case(self, application_id: int) -> CaseView:
        self.require(Action.VIEW_QUEUE)
        now = iso_utc(self.ctx.clock())
        config = self.ctx.config
        with self.ctx.store.connect() as conn:
            app = _application(conn, application_id)
            score = cases.score(conn, application_id)
            uploaded = cases.uploaded_at(conn, app.batch_id)
            held = cases.claim(conn, application_id, live_at=now)
            past = cases.history(conn, application_id)
        segs = {name: getattr(app, f"segment_{i + 1}") for i, name in enumerate(config.segments)}
        return CaseView(
            application_id=app.id, external_id=app.external_id, batch_id=app.batch_id,
            status=Status(app.status), band=Band(app.band), probability=app.probability, amount=app.amount,
            expected_profit=app.expected_profit, model_version=score.model_version if score else "",
            data=json.loads(app.data), reasons=cases.reasons(score), decisions=past, claim=held,
            uploaded_at=uploaded, current_decision_id=app.current_decision_id, segments=segs,
        )

    def explain(self, case: CaseView) -> CaseExplanation:
        """Every feature's SHAP contribution to the case's score, by the model that scored it."""
        self.require(Action.VIEW_QUEUE)
        return explain_record(version_engine(self.ctx, case.model_version), case.data)

    def model_name(self, version: str) -> str:
        """Which kind of model a version is (the explanation chart's units depend on it)."""
        self.require(Action.VIEW_QUEUE)
        return load_version(self.ctx, version).model_name

    def find(self, external_id: str) -> list[int]:
        """Stored application ids for an application id as submitted (one per batch it was in)."""
        self.require(Action.VIEW_QUEUE)
        with self.ctx.store.connect() as conn:
            return cases.by_external_id(conn, external_id)

    def next_case(self, order: QueueOrder | str = QueueOrder.OLDEST) -> int | None:
        """The first pending case nobody else holds (one's own claim counts as free)."""
        self.require(Action.VIEW_QUEUE)
        with self.ctx.store.connect() as conn:
            return cases.next_free(conn, self.actor.username, QueueOrder(order), iso_utc(self.ctx.clock()))


def _check_form(outcome: Outcome | str, reason: str, note: str) -> tuple[Outcome, str, str]:
    text = (outcome or "").strip().lower()
    reason, note = (reason or "").strip(), (note or "").strip()
    try:
        chosen = Outcome(text)
    except ValueError:
        raise InvalidDecision(f"outcome must be one of {', '.join(Outcome)}, got {text!r}",
                              field="outcome") from None
    if chosen is Outcome.DECLINE and not reason:
        raise InvalidDecision("a decline needs a reason: pick a reason code or write one", field="reason")
    if chosen is Outcome.REFER and not note:
        raise InvalidDecision("a referral needs a note saying what to look at", field="note")
    if len(reason) > MAX_TEXT or len(note) > MAX_TEXT:
        raise InvalidDecision(f"reason and note are limited to {MAX_TEXT} characters", field="note")
    return chosen, reason, note


def _application(conn: Connection, application_id: int, *, lock: bool = False) -> Any:
    row = cases.application(conn, application_id, lock=lock)
    if row is None:
        raise NotFound(f"no application {application_id}", application=application_id)
    return row


def _claim_conflict(held: ClaimInfo) -> Conflict:
    return Conflict(
        f"case is being reviewed by {held.claimed_by} since {held.claimed_at[:16].replace('T', ' ')} UTC "
        f"(claim expires {held.expires_at[11:16]} UTC)",
        reason="claimed", claimed_by=held.claimed_by, claimed_at=held.claimed_at, expires_at=held.expires_at,
    )


def _decided_conflict(conn: Connection, app: Any, why: str = "") -> Conflict:
    current = cases.latest_decision(conn, app.id)
    if current is None:
        return Conflict(f"case {app.external_id} changed meanwhile: reload it", reason="changed")
    kind = "automatically" if current.kind == DecisionKind.AUTO else f"by {current.decided_by}"
    return Conflict(
        f"case {app.external_id} was already decided {kind}: {current.outcome} at "
        f"{current.decided_at[:16].replace('T', ' ')} UTC" + (f" ({why})" if why else ""),
        reason="decided", decided_by=current.decided_by, outcome=current.outcome, decision_id=current.id,
        decided_at=current.decided_at,
    )
