"""Checking stored decisions against the audit trail, and one application's full trail.

The hash chain (``finflow_core.store.audit_chain``) proves the trail itself is intact. This module
proves the decision records agree with it: each batch's automatic decisions must hash to
the digest its ``batch_scored`` entry recorded, and each officer's decision must match
its ``case_decided`` entry. Years later a lender can answer: which model, what it said
and why, who decided, when, and whether anyone changed the record since.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from finflow_core.lending.spreadsheet import spreadsheet_safe
from finflow_core.lending.terms import STATUS_OF_OUTCOME
from finflow_core.store import Store
from finflow_core.store.audit_chain import AuditEntry, audit_trail
from finflow_core.store.lending_tables import applications, batches, decisions, scores
from finflow_core.store.tables import audit_log


def decision_digest_line(row_number: int, external_id: str, outcome: str, probability: float) -> bytes:
    """One automatic decision as hashed into its batch's ``batch_scored`` audit entry."""
    return f"{row_number}|{external_id}|{outcome}|{probability:.17g}\n".encode()


@dataclass
class DecisionVerification:
    ok: bool
    batches_checked: int
    manual_checked: int
    problems: list[str] = field(default_factory=list)
    message: str = ""


def verify_decisions(store: Store) -> DecisionVerification:
    """Recompute every batch's automatic-decision digest and match manual decisions to the trail."""
    problems: list[str] = []
    with store.connect(snapshot=True) as conn:
        audited = {}
        manual_entries = {}
        for r in conn.execute(select(audit_log.c.seq, audit_log.c.action, audit_log.c.subject_id,
                                     audit_log.c.actor, audit_log.c.details)
                              .where(audit_log.c.action.in_(("batch_scored", "case_decided")))):
            d = json.loads(r.details)
            if r.action == "batch_scored":
                audited[r.subject_id] = (r.seq, d.get("auto_decisions_sha256"))
            else:
                manual_entries[int(d["decision"])] = (r.seq, r.actor, d)
        # a load in progress is not audited yet (it is published with its audit entries);
        # every batch with a batch_scored entry is checked whatever state it claims to be in
        batch_ids = [bid for bid, state in conn.execute(
            select(batches.c.id, batches.c.state).order_by(batches.c.uploaded_at))
            if bid in audited or state not in ("loading", "aborting")]
        for bid in batch_ids:
            digest = hashlib.sha256()
            rows = conn.execute(
                select(applications.c.row_number, applications.c.external_id, decisions.c.outcome,
                       scores.c.probability)
                .join(decisions, decisions.c.application_id == applications.c.id)
                .join(scores, scores.c.application_id == applications.c.id)
                .where(applications.c.batch_id == bid).where(decisions.c.kind == "auto")
                .order_by(applications.c.row_number, decisions.c.id)
            )
            for r in rows:
                digest.update(decision_digest_line(r.row_number, r.external_id, r.outcome, r.probability))
            entry = audited.get(bid)
            if entry is None:
                problems.append(f"batch {bid} has no batch_scored audit entry")
            elif entry[1] != digest.hexdigest():
                problems.append(f"automatic decisions or scores of batch {bid} differ from what audit "
                                f"entry {entry[0]} recorded")
        problems += _current_state_problems(conn)
        manual = conn.execute(select(decisions).where(decisions.c.kind == "manual").order_by(decisions.c.id)).all()
        for d in manual:
            entry = manual_entries.pop(d.id, None)
            if entry is None:
                problems.append(f"decision {d.id} (application {d.application_id}) has no audit entry")
                continue
            seq, actor, det = entry
            same = (actor == d.decided_by and det.get("outcome") == d.outcome
                    and det.get("reason") == d.reason and det.get("note") == d.note
                    and det.get("supersedes") == d.supersedes_id)
            if not same:
                problems.append(f"decision {d.id} differs from audit entry {seq}")
        for decision_id, (seq, _, _) in sorted(manual_entries.items()):
            problems.append(f"decision {decision_id} recorded by audit entry {seq} is missing")
    ok = not problems
    message = (f"decisions match the audit trail: {len(batch_ids)} batches, {len(manual)} officer decisions"
               if ok else f"{len(problems)} problem(s): " + "; ".join(problems[:5]))
    return DecisionVerification(ok, len(batch_ids), len(manual), problems, message)


def _current_state_problems(conn: Connection) -> list[str]:
    """The copy of each application's state on its row (what queues, pages and exports show)
    must agree with its score and its current, unsuperseded decision."""
    a, s, d = applications.c, scores.c, decisions.c
    problems = [
        f"{n} application(s) of batch {bid} show a probability other than their stored score"
        for bid, n in conn.execute(
            select(a.batch_id, func.count()).select_from(applications.join(scores, s.application_id == a.id))
            .where(a.probability != s.probability).group_by(a.batch_id).order_by(a.batch_id))
    ]
    successor = decisions.alias("successor")
    later = select(successor.c.id).where(successor.c.supersedes_id == a.current_decision_id).exists()
    consistent = or_(
        and_(a.current_decision_id.is_(None), a.status == "pending"),
        *[and_(d.outcome == outcome, a.status == status) for outcome, status in STATUS_OF_OUTCOME.items()],
    )
    bad = (
        select(a.batch_id, func.count())
        .select_from(applications.outerjoin(decisions, d.id == a.current_decision_id))
        .where(or_(~consistent, later, and_(a.current_decision_id.is_not(None), d.id.is_(None)),
                   and_(d.id.is_not(None), d.application_id != a.id)))
        .group_by(a.batch_id).order_by(a.batch_id)
    )
    problems += [f"{n} application(s) of batch {bid} show a status that is not their current decision's"
                 for bid, n in conn.execute(bad)]
    return problems


@dataclass(frozen=True)
class TrailEvent:
    """One thing recorded about an application: an audit entry, its score or a decision."""

    at: str
    source: str  # "audit" | "score" | "decision"
    seq: int | None
    actor: str
    action: str
    model_version: str | None
    details: dict[str, Any]


def _from_entry(e: AuditEntry) -> TrailEvent:
    return TrailEvent(e.at, "audit", e.seq, e.actor, e.action, e.model_version, e.detail)


def application_trail(store: Store, external_id: str) -> list[TrailEvent]:
    """Everything recorded about one application id, oldest first."""
    events: list[TrailEvent] = []
    with store.connect() as conn:
        apps = conn.execute(select(applications).where(applications.c.external_id == external_id)
                            .order_by(applications.c.id)).all()
        for app in apps:
            score = conn.execute(select(scores).where(scores.c.application_id == app.id)).first()
            events += [_from_entry(e) for e in audit_trail(store, "batch", app.batch_id)]
            if score is not None:
                events.append(TrailEvent(
                    score.scored_at, "score", None, f"model:{score.model_version}", "scored",
                    score.model_version,
                    {"batch": app.batch_id, "row_number": app.row_number, "probability": score.probability,
                     "band": score.band, "reasons": [r["text"] for r in json.loads(score.reasons)]}))
            for d in conn.execute(select(decisions).where(decisions.c.application_id == app.id)
                                  .order_by(decisions.c.id)):
                events.append(TrailEvent(
                    d.decided_at, "decision", None, d.decided_by, f"decision_{d.outcome}", d.model_version,
                    {"decision": d.id, "kind": d.kind, "reason": d.reason, "note": d.note,
                     "supersedes": d.supersedes_id}))
    events += [_from_entry(e) for e in audit_trail(store, "application", external_id)]
    events.sort(key=lambda e: (e.at, e.seq or 0))
    return events


TRAIL_FIELDS = ("at", "source", "seq", "actor", "action", "model_version", "details")


def application_trail_csv(store: Store, external_id: str) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TRAIL_FIELDS, lineterminator="\n")
    writer.writeheader()
    for e in application_trail(store, external_id):
        row = {"at": e.at, "source": e.source, "seq": e.seq, "actor": e.actor, "action": e.action,
               "model_version": e.model_version, "details": json.dumps(e.details, sort_keys=True)}
        writer.writerow({k: spreadsheet_safe("" if row[k] is None else str(row[k])) for k in TRAIL_FIELDS})
    return buf.getvalue()
