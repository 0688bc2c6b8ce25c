"""The review desk's records: what its reads return, how an officer's decision is written,
the installation's four-eyes rules, and what the desk says when a case changed under an
officer (for :mod:`finflow_core.services.review`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from finflow_core.errors import Conflict, FinFlowError, InvalidInput, NotFound
from finflow_core.lending.authority import AuthorityRules, Edges, ProposalStatus
from finflow_core.lending.terms import (
    OPEN_STATUSES,
    STATUS_OF_OUTCOME,
    Band,
    BatchState,
    DecisionKind,
    Outcome,
    Status,
)
from finflow_core.services.text_input import typed_text
from finflow_core.store import cases, registry
from finflow_core.store import proposals as proposal_rows
from finflow_core.store.audit_chain import append_audit
from finflow_core.store.cases import ClaimInfo, DecisionRecord, QueueRow
from finflow_core.store.desk import OverrideCount
from finflow_core.store.lending_tables import decisions
from finflow_core.store.proposals import Proposal
from finflow_core.store.rollup import move_application
from finflow_core.store.seals import seal_ref, sealed_insert_values
from finflow_core.store.tables import iso_utc

MAX_TEXT = 2000


class InvalidDecision(InvalidInput):
    """A decision form that cannot be recorded as given (missing reason, unknown outcome)."""


class FourEyesRefused(FinFlowError):
    """A second approval this officer may not give (their own proposal, or beyond their
    authority)."""

    exit_code = 8


@dataclass(frozen=True)
class QueuePage:
    rows: list[QueueRow]
    total: int
    overdue: int = 0  # of ``total``, past the service level
    sla_hours: float = 0.0


@dataclass(frozen=True)
class DeskCounts:
    """The queue at a glance."""

    pending: int
    referred: int
    overdue: int  # open cases waiting longer than the service level
    awaiting: int  # decisions awaiting a second officer
    sla_hours: float


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
    edges: Edges | None = None  # the model's view: PD against the batch's band edges
    proposal: Proposal | None = None  # a decision awaiting a second officer
    proposals: list[Proposal] = field(default_factory=list)
    waiting_hours: float = 0.0
    sla_hours: float = 0.0

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def overdue(self) -> bool:
        return self.is_open and self.waiting_hours > self.sla_hours

    @property
    def suggestion(self) -> Outcome | None:
        return None if self.edges is None else self.edges.suggestion


@dataclass(frozen=True)
class OverrideReport:
    """Manual approve / decline decisions against the model's suggestion, by officer and
    overall; ``watch`` and ``alert`` are the configured flags (lenders use 5-10%)."""

    overall: OverrideCount
    by_officer: list[OverrideCount]
    watch: float
    alert: float

    def level(self, count: OverrideCount) -> str:
        """``ok``, ``watch`` or ``alert`` for a count's rate (``ok`` when there is none)."""
        rate = count.rate
        if rate is None or rate <= self.watch:
            return "ok"
        return "alert" if rate > self.alert else "watch"


def rules_of(config: Any) -> AuthorityRules:
    """The installation's four-eyes rules from ``review``."""
    review = config.review
    return AuthorityRules(review.override_distance, review.four_eyes.default_limit,
                          frozenset(Outcome(o) for o in review.four_eyes.outcomes))


def record_decision(conn: Connection, app: Any, score: Any, outcome: Outcome, reason: str,
                    note: str, supersedes: int | None, me: str, now: datetime, *,
                    suggestion: Outcome, proposed_by: str | None = None,
                    four_eyes: str | None = None, proposal: int | None = None,
                    confirm_note: str = "") -> DecisionRecord:
    """Write one officer's decision, move the case and audit it (inside the caller's
    transaction); the application row must still be at ``supersedes``."""
    version = score.model_version if score is not None else None
    sealed = sealed_insert_values(  # a fresh id and the keyed seal of the row
        conn, decisions, application_id=app.id, outcome=outcome, kind=DecisionKind.MANUAL,
        decided_by=me, reason=reason, note=note, decided_at=iso_utc(now), model_version=version,
        supersedes_id=supersedes, suggestion=suggestion, proposed_by=proposed_by, four_eyes=four_eyes,
    )
    decision_id = cases.insert_decision(conn, **sealed)
    priced = score is None or score.ev_approve is not None  # unpriced: no economics configured
    profit = {Outcome.APPROVE: score.ev_approve if score else 0.0,
              Outcome.DECLINE: 0.0 if priced else None,
              Outcome.REFER: score.ev_review if score else 0.0}[outcome]
    status = STATUS_OF_OUTCOME[outcome]
    profit = None if profit is None else float(profit)  # None: not priced
    move_application(conn, app, status, DecisionKind.MANUAL, profit)
    changed = cases.set_current_decision(conn, app.id, supersedes, status=status,
                                         decision_id=decision_id, kind=DecisionKind.MANUAL,
                                         expected_profit=profit)
    if changed != 1:  # someone else got there between our read and write
        raise decided_conflict(conn, app)
    cases.drop_claim(conn, app.id)
    details: dict[str, Any] = {
        "application": app.id, "decision": decision_id, "outcome": outcome, "reason": reason,
        "note": note, "supersedes": supersedes, "probability": app.probability, "band": app.band,
        "suggestion": suggestion, **seal_ref("decisions", decision_id, sealed["seal"]),
    }
    if proposal is not None:  # a confirmed proposal: closed here, its new seal recorded too
        if proposal_rows.close(conn, proposal, ProposalStatus.CONFIRMED, by=me, at=iso_utc(now),
                               note=confirm_note, decision_id=decision_id) != 1:
            raise closed_conflict(proposal_row(conn, proposal))
        details["row_seals"] = [proposal_rows.seal_ref(conn, proposal)["row_seal"]]
    if proposed_by is not None:
        details.update(proposed_by=proposed_by, proposal=proposal, four_eyes=four_eyes,
                       confirm_note=confirm_note)
    append_audit(conn, me, "case_decided", "application", app.external_id, details,
                 model_version=version, at=now)
    return DecisionRecord(decision_id, app.id, outcome, DecisionKind.MANUAL, me, reason, note,
                          iso_utc(now), version, supersedes, suggestion, proposed_by, four_eyes)


def edges_of(conn: Connection, app: Any, score: Any) -> Edges:
    low, high = cases.batch_edges(conn, app.batch_id)
    version = registry.version(conn, score.model_version) if score is not None else None
    return Edges.of(app.probability, low, high, None if version is None else version.cutoff)


def check_current(conn: Connection, app: Any, supersedes: int | None) -> None:
    expected = app.current_decision_id
    if supersedes is None:
        # only a pending case takes a first decision; a referred one is decided by naming
        # the referral, so nobody overrides a referral they have not seen
        if app.status != Status.PENDING:
            raise decided_conflict(conn, app)
    elif supersedes != expected:
        raise decided_conflict(conn, app, f"decision {supersedes} is no longer the current one")


def check_form(outcome: Outcome | str, reason: str, note: str) -> tuple[Outcome, str, str]:
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
    reason = typed_text(reason, "reason", limit=MAX_TEXT, error=InvalidDecision)
    note = typed_text(note, "note", limit=MAX_TEXT, lines=True, error=InvalidDecision)
    return chosen, reason, note


def application_row(conn: Connection, application_id: int, *, lock: bool = False) -> Any:
    row = cases.application(conn, application_id, lock=lock)
    if row is None:
        raise NotFound(f"no application {application_id}", application=application_id)
    if lock and row.batch_state == BatchState.VOIDED:  # kept in the history, not worked on
        raise Conflict(f"case {row.external_id} belongs to batch {row.batch_id}, which a manager "
                       "voided: it can no longer be claimed or decided", reason="voided",
                       batch_id=row.batch_id)
    return row


def proposal_row(conn: Connection, proposal_id: int, *, checked: bool = False) -> Proposal:
    """The proposal (``checked``: refused when it fails its seal, see ``store.proposals``)."""
    found = (proposal_rows.checked if checked else proposal_rows.get)(conn, proposal_id)
    if found is None:
        raise NotFound(f"no proposed decision {proposal_id}", proposal=proposal_id)
    return found


def claim_conflict(held: ClaimInfo) -> Conflict:
    return Conflict(
        f"case is being reviewed by {held.claimed_by} since {held.claimed_at[:16].replace('T', ' ')} UTC "
        f"(claim expires {held.expires_at[11:16]} UTC)",
        reason="claimed", claimed_by=held.claimed_by, claimed_at=held.claimed_at, expires_at=held.expires_at,
    )


def awaiting_conflict(p: Proposal) -> Conflict:
    return Conflict(
        f"this case awaits a second officer: {p.proposed_by} proposed to {p.outcome} it at "
        f"{p.proposed_at[:16].replace('T', ' ')} UTC; confirm or reject that proposal first",
        reason="awaiting", proposal=p.id, proposed_by=p.proposed_by,
    )


def closed_conflict(p: Proposal) -> Conflict:
    return Conflict(f"the proposal to {p.outcome} was already {p.status} by {p.closed_by}",
                    reason="proposal_closed", proposal=p.id, closed_by=p.closed_by)


def decided_conflict(conn: Connection, app: Any, why: str = "") -> Conflict:
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
