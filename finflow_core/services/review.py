"""The manual-review desk: the queue, claiming cases and recording officers' decisions.

Two officers, one case: opening a case claims it for ``review.claim_minutes``; while the
claim lives nobody else can decide it. Deciding checks, inside one transaction, that the
case is still undecided (or still at the decision being revised): a decision is never
overwritten; a changed decision is a new record that supersedes the old one, and the
loser of a race is told who decided first.

Four eyes (:mod:`finflow_core.lending.authority`): a decision above the officer's lending
limit, or an override of the model far beyond its band edge, is not recorded at once but
proposed; the case stays open ("awaiting a second officer") until another officer whose
authority covers it confirms it (then it becomes the decision, naming both) or rejects it.
Every manual decision records what the model suggested, for the override rate.
"""

from __future__ import annotations

import json
from contextlib import suppress
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from finflow_core import formatting as fmt
from finflow_core.errors import Conflict, InvalidInput, NotFound
from finflow_core.lending.authority import ProposalStatus, needs_text
from finflow_core.lending.config import FINFLOW_CSV
from finflow_core.lending.terms import (
    OPEN_STATUSES,
    Band,
    Outcome,
    Status,
)
from finflow_core.lending.waterfall import ProbabilityWaterfall
from finflow_core.services import review_records as rr
from finflow_core.services.access import Action
from finflow_core.services.applications import record_csv
from finflow_core.services.base import Service
from finflow_core.services.review_records import (
    MAX_TEXT,
    CaseView,
    DeskCounts,
    FourEyesRefused,
    InvalidDecision,
    OverrideReport,
    QueuePage,
    rules_of,
)
from finflow_core.services.scoring_engines import load_version, version_engine
from finflow_core.services.text_input import typed_text
from finflow_core.store import cases
from finflow_core.store import proposals as proposal_rows
from finflow_core.store import users as user_rows
from finflow_core.store.audit_chain import append_audit
from finflow_core.store.cases import ClaimInfo, DecisionRecord, QueueRow
from finflow_core.store.desk import DayCounts, OverrideCount, day_counts, override_counts
from finflow_core.store.proposals import Proposal
from finflow_core.store.tables import iso_utc, parse_utc

__all__ = ["MAX_TEXT", "CaseView", "ClaimInfo", "DayCounts", "DecisionRecord", "DeskCounts",
           "FourEyesRefused", "InvalidDecision", "OverrideReport", "Proposal", "QueueOrder",
           "QueuePage", "QueueRow", "ReviewService"]


class QueueOrder(StrEnum):
    OLDEST = "oldest"
    AMOUNT = "amount"


class ReviewService(Service):
    """Officers work the queue; managers may look."""

    # -- the queue ----------------------------------------------------------------------------
    def queue(self, status: Status | str = Status.PENDING, order: QueueOrder | str = QueueOrder.OLDEST,
              limit: int = 50, offset: int = 0, *, overdue_only: bool = False) -> QueuePage:
        """Open cases (pending or referred), overdue ones first, then oldest or largest
        first; ``overdue_only`` lists only those past the service level."""
        self.require(Action.VIEW_QUEUE)
        try:
            status = Status(status)
        except ValueError:
            status = None  # type: ignore[assignment]
        if status not in OPEN_STATUSES:
            raise InvalidDecision("the queue shows 'pending' or 'referred' cases", field="status")
        now, late = self._now_and_due()
        with self.ctx.store.connect() as conn:
            rows = cases.queue(conn, status, QueueOrder(order), limit, offset, iso_utc(now),
                               overdue_before=late, overdue_only=overdue_only)
            total = cases.count_by_status(conn, (status,))[status]
            overdue = cases.count_overdue(conn, (status,), late)
        return QueuePage(rows, overdue if overdue_only else total, overdue,
                         self.ctx.config.review.sla_hours)

    def awaiting(self, limit: int = 50, offset: int = 0) -> QueuePage:
        """Cases whose decision awaits a second officer, oldest proposal first."""
        self.require(Action.VIEW_QUEUE)
        now, late = self._now_and_due()
        with self.ctx.store.connect() as conn:
            rows = cases.awaiting(conn, limit, offset, iso_utc(now), late)
            total = cases.count_awaiting(conn)
        return QueuePage(rows, total, sum(r.overdue for r in rows), self.ctx.config.review.sla_hours)

    def counts(self) -> dict[Status, int]:
        """How many cases are pending and referred."""
        self.require(Action.VIEW_QUEUE)
        with self.ctx.store.connect() as conn:
            return cases.count_by_status(conn, OPEN_STATUSES)

    def desk(self) -> DeskCounts:
        """Pending, referred, overdue and awaiting a second officer, in one read."""
        self.require(Action.VIEW_QUEUE)
        _, late = self._now_and_due()
        with self.ctx.store.connect() as conn:
            counts = cases.count_by_status(conn, OPEN_STATUSES)
            overdue = cases.count_overdue(conn, OPEN_STATUSES, late)
            awaiting = cases.count_awaiting(conn)
        return DeskCounts(counts[Status.PENDING], counts[Status.REFERRED], overdue, awaiting,
                          self.ctx.config.review.sla_hours)

    def _now_and_due(self) -> tuple[datetime, str]:
        now = self.ctx.clock()
        return now, iso_utc(now - timedelta(hours=self.ctx.config.review.sla_hours))

    # -- claims -------------------------------------------------------------------------------
    def claim(self, application_id: int) -> ClaimInfo:
        """Claim an open case for this officer; refused while someone else's claim lives."""
        self.require(Action.CLAIM_CASE)
        now = self.ctx.clock()
        expires = now + timedelta(minutes=self.ctx.config.review.claim_minutes)
        me = self.actor.username
        with self.ctx.store.begin() as conn:
            app = rr.application_row(conn, application_id, lock=True)
            if app.status not in OPEN_STATUSES and proposal_rows.open_for(conn, app.id) is None:
                raise rr.decided_conflict(conn, app)
            held = cases.claim(conn, application_id)
            if held is not None and held.claimed_by != me and parse_utc(held.expires_at) > now:
                raise rr.claim_conflict(held)
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

    # -- decisions ----------------------------------------------------------------------------
    def decide(self, application_id: int, outcome: Outcome | str, reason: str = "", note: str = "", *,
               supersedes: int | None = None) -> DecisionRecord | Proposal:
        """Record an officer's decision; ``supersedes`` names the decision being revised.

        Without ``supersedes`` the case must still be pending; a referred case (or a decision
        being changed) is decided by passing the current decision's id, as the officer saw it.
        Raises :class:`Conflict` naming who decided first when anything changed meanwhile.
        Returns a :class:`Proposal` instead when a second officer must confirm it (four eyes).
        """
        self.require(Action.DECIDE_CASE)
        outcome, reason, note = rr.check_form(outcome, reason, note)
        now = self.ctx.clock()
        me = self.actor.username
        try:
            with self.ctx.store.begin() as conn:
                app = rr.application_row(conn, application_id, lock=True)
                self._check_free(conn, app, now)
                waiting = proposal_rows.open_for(conn, app.id)
                if waiting is not None:
                    raise rr.awaiting_conflict(waiting)
                rr.check_current(conn, app, supersedes)
                score = cases.score(conn, application_id)
                edges = rr.edges_of(conn, app, score)
                limit = user_rows.lending_limit(conn, me)
                needs = rules_of(self.ctx.config).second_looks(outcome, float(app.amount), limit, edges)
                if needs:
                    pid = proposal_rows.insert(
                        conn, application_id=app.id, outcome=outcome, reason=reason, note=note,
                        supersedes_id=supersedes, proposed_by=me, proposed_at=iso_utc(now),
                        needs=needs_text(needs), amount=float(app.amount),
                        probability=float(app.probability), suggestion=edges.suggestion,
                        authority_limit=limit)
                    cases.drop_claim(conn, application_id)
                    append_audit(conn, me, "case_proposed", "application", app.external_id, {
                        "application": application_id, "proposal": pid, "outcome": outcome,
                        "reason": reason, "note": note, "supersedes": supersedes,
                        "needs": needs_text(needs), "amount": float(app.amount),
                        "authority_limit": limit, "probability": app.probability,
                        "suggestion": edges.suggestion, "band": app.band,
                        **proposal_rows.seal_ref(conn, pid),
                    }, model_version=score.model_version if score is not None else None, at=now)
                    found = proposal_rows.get(conn, pid)
                    assert found is not None  # just written in this transaction
                    return found
                return rr.record_decision(conn, app, score, outcome, reason, note, supersedes, me, now,
                               suggestion=edges.suggestion)
        except IntegrityError as exc:
            raise self._race(exc, application_id) from None

    def confirm(self, proposal_id: int, note: str = "") -> DecisionRecord:
        """Confirm a colleague's proposed decision: it becomes the decision (decided by this
        officer, proposed by the first). Refused for one's own proposal, and for an
        approval beyond this officer's authority."""
        self.require(Action.DECIDE_CASE)
        note = typed_text(note, "note", limit=MAX_TEXT, lines=True, error=InvalidDecision)
        now = self.ctx.clock()
        me = self.actor.username
        try:
            with self.ctx.store.begin() as conn:
                prop = rr.proposal_row(conn, proposal_id, checked=True)  # its seal, too
                app = rr.application_row(conn, prop.application_id, lock=True)
                if not prop.is_open:
                    raise rr.closed_conflict(prop)
                if prop.proposed_by == me:
                    raise FourEyesRefused("a second approval must come from another officer: you "
                                          "proposed this decision", proposal=proposal_id)
                limit = user_rows.lending_limit(conn, me)
                if not rules_of(self.ctx.config).covers(limit, prop.amount, prop.outcome):
                    raise FourEyesRefused(
                        f"your lending authority ({fmt.money(limit, self._currency)}) does not "
                        f"cover {fmt.money(prop.amount, self._currency)}: an officer with a higher "
                        "limit must confirm it", proposal=proposal_id, authority_limit=limit)
                self._check_free(conn, app, now)
                rr.check_current(conn, app, prop.supersedes_id)
                score = cases.score(conn, app.id)
                # closes the proposal too, before the case_decided entry that records both seals
                return rr.record_decision(conn, app, score, prop.outcome, prop.reason, prop.note,
                                 prop.supersedes_id, me, now, suggestion=prop.suggestion,
                                 proposed_by=prop.proposed_by, four_eyes=needs_text(prop.needs),
                                 proposal=prop.id, confirm_note=note)
        except IntegrityError as exc:
            raise self._race(exc, None) from None

    def reject(self, proposal_id: int, note: str = "") -> Proposal:
        """Send a proposed decision back: another officer rejects it (with a note saying
        why), the proposer withdraws it. The case is open for a fresh decision again."""
        self.require(Action.DECIDE_CASE)
        note = typed_text(note, "note", limit=MAX_TEXT, lines=True, error=InvalidDecision)
        now = self.ctx.clock()
        me = self.actor.username
        with self.ctx.store.begin() as conn:
            prop = rr.proposal_row(conn, proposal_id)
            app = rr.application_row(conn, prop.application_id, lock=True)
            if not prop.is_open:
                raise rr.closed_conflict(prop)
            own = prop.proposed_by == me
            if not own and not note:
                raise InvalidDecision("rejecting a colleague's decision needs a note saying why",
                                      field="note")
            status = ProposalStatus.WITHDRAWN if own else ProposalStatus.REJECTED
            proposal_rows.close(conn, prop.id, status, by=me, at=iso_utc(now), note=note)
            append_audit(conn, me, f"proposal_{status}", "application", app.external_id, {
                "application": app.id, "proposal": prop.id, "proposed_by": prop.proposed_by,
                "outcome": prop.outcome, "note": note, **proposal_rows.seal_ref(conn, prop.id)},
                at=now)
            closed = proposal_rows.get(conn, prop.id)
        assert closed is not None
        return closed

    def _check_free(self, conn: Connection, app: Any, now: datetime) -> None:
        held = cases.claim(conn, app.id)
        if held is not None and held.claimed_by != self.actor.username and parse_utc(held.expires_at) > now:
            raise rr.claim_conflict(held)

    def _race(self, exc: IntegrityError, application_id: int | None) -> Exception:
        if "decisions" not in str(exc.orig) and "proposals" not in str(exc.orig):
            return exc
        if application_id is None:
            return Conflict("the case changed meanwhile: reload it", reason="changed")
        # the database's own guard (one decision per case, one successor each) caught a race
        with self.ctx.store.connect() as conn:
            return rr.decided_conflict(conn, rr.application_row(conn, application_id))

    @property
    def _currency(self) -> str:
        return self.ctx.config.economics.currency

    # -- one case -----------------------------------------------------------------------------
    def open(self, application_id: int, *, claim: bool = True) -> CaseView:
        """The case as an officer sees it; claims it first when it is open and free."""
        self.require(Action.VIEW_QUEUE)
        if claim and self.wb.can(Action.CLAIM_CASE):
            with suppress(Conflict):  # a held or decided case is shown as such
                self.claim(application_id)
        return self.case(application_id)

    def case(self, application_id: int) -> CaseView:
        self.require(Action.VIEW_QUEUE)
        now = self.ctx.clock()
        config = self.ctx.config
        with self.ctx.store.connect() as conn:
            app = rr.application_row(conn, application_id)
            score = cases.score(conn, application_id)
            uploaded = cases.uploaded_at(conn, app.batch_id)
            held = cases.claim(conn, application_id, live_at=iso_utc(now))
            past = cases.history(conn, application_id)
            edges = rr.edges_of(conn, app, score)
            proposed = proposal_rows.history(conn, application_id)
        segs = {name: getattr(app, f"segment_{i + 1}") for i, name in enumerate(config.segments)}
        waiting = max(0.0, (now - parse_utc(uploaded)).total_seconds() / 3600) if uploaded else 0.0
        return CaseView(
            application_id=app.id, external_id=app.external_id, batch_id=app.batch_id,
            status=Status(app.status), band=Band(app.band), probability=app.probability, amount=app.amount,
            expected_profit=app.expected_profit, model_version=score.model_version if score else "",
            data=json.loads(app.data), reasons=cases.reasons(score), decisions=past, claim=held,
            uploaded_at=uploaded, current_decision_id=app.current_decision_id, segments=segs,
            edges=edges, proposal=next((p for p in proposed if p.is_open), None), proposals=proposed,
            waiting_hours=waiting, sla_hours=config.review.sla_hours,
        )

    def explain(self, case: CaseView) -> ProbabilityWaterfall:
        """The case's SHAP explanation in probability of default, by the model that scored
        it: from the base rate to its PD, every reason code with a bar of its own."""
        self.require(Action.VIEW_QUEUE)
        from finflow_core.lending.intake.validation import validate_batch

        engine = version_engine(self.ctx, case.model_version)
        if engine.explainer is None:
            raise NotFound("this model version was loaded without explanations")
        config = self.ctx.config
        report = validate_batch(record_csv(case.data, config.input_columns), config,
                                name="case", form=FINFLOW_CSV)
        if report.rows_valid == 0:
            raise InvalidInput("the stored application no longer passes the quality gate: "
                               + "; ".join(report.issues["message"]), field="data")
        return engine.explainer.waterfall(report.valid, case.probability,
                                          cited=[r["feature"] for r in case.reasons])

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
        """The next case for this officer: a colleague's decision they may confirm, else the
        first pending case nobody else holds (overdue first; one's own claim counts as free)."""
        self.require(Action.VIEW_QUEUE)
        now, late = self._now_and_due()
        me = self.actor.username
        rules = rules_of(self.ctx.config)
        with self.ctx.store.connect() as conn:
            if self.wb.can(Action.DECIDE_CASE):
                taken = cases.held_by_others(me, iso_utc(now))
                found = proposal_rows.first_confirmable(
                    conn, me, rules.limit_of(user_rows.lending_limit(conn, me)),
                    tuple(rules.outcomes), taken)
                if found is not None:
                    return found
            return cases.next_free(conn, me, QueueOrder(order), iso_utc(now), late)

    # -- the desk's figures -------------------------------------------------------------------
    def today(self) -> DayCounts:
        """What this officer decided today (the installation's time zone), what they
        confirmed for colleagues and what still awaits a second officer."""
        self.require(Action.VIEW_QUEUE)
        local = self.ctx.clock().astimezone(fmt.zone(self.ctx.config.display.timezone))
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        with self.ctx.store.connect() as conn:
            return day_counts(conn, self.actor.username, iso_utc(midnight))

    def override_rate(self, since: str | None = None, until: str | None = None) -> OverrideReport:
        """Manual approve / decline decisions against the model's suggestion, by officer and
        overall (for managers); ``since``/``until`` bound the decision time (ISO, UTC)."""
        self.require(Action.VIEW_PORTFOLIO)
        with self.ctx.store.connect() as conn:
            per = override_counts(conn, since, until)
        overall = OverrideCount("all officers", sum(c.decisions for c in per),
                                sum(c.approved_against for c in per),
                                sum(c.declined_against for c in per), sum(c.four_eyes for c in per))
        review = self.ctx.config.review
        return OverrideReport(overall, per, review.override_watch, review.override_alert)

    def authority(self) -> float | None:
        """This officer's lending authority (their limit, else the configured default;
        None: no cap)."""
        self.require(Action.VIEW_QUEUE)
        with self.ctx.store.connect() as conn:
            return rules_of(self.ctx.config).limit_of(user_rows.lending_limit(conn, self.actor.username))
