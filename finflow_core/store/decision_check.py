"""Checking stored decisions against their seals and the audit trail, and one application's trail.

The keyed chain proves the trail itself is intact; ``verify_batches`` proves the lending
records agree with it, row by row (:func:`verify_decisions` runs just that part of
``finflow audit verify``). Years later a lender can answer: which model, what it said and
why, who decided, when, and whether anyone changed the record since.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from finflow_core import formatting as fmt
from finflow_core.lending.spreadsheet import spreadsheet_safe
from finflow_core.store import Store
from finflow_core.store.audit_chain import AuditEntry, audit_trail
from finflow_core.store.lending_tables import applications, decisions, scores
from finflow_core.store.seals import key_of
from finflow_core.store.trail_record import TrailRecord
from finflow_core.store.verify_batches import check_lending
from finflow_core.store.verify_chain import verify_in
from finflow_core.store.verify_records import check_batches


def decision_digest_line(row_number: int, external_id: str, outcome: str, probability: float) -> bytes:
    """One automatic decision as hashed into its batch's ``batch_scored`` audit entry (an
    unkeyed digest kept for older readers; verify now checks each decision against its
    sealed score instead)."""
    return f"{row_number}|{external_id}|{outcome}|{probability:.17g}\n".encode()


@dataclass
class DecisionVerification:
    ok: bool
    batches_checked: int
    manual_checked: int
    problems: list[str] = field(default_factory=list)
    message: str = ""


def summarise(problems: list[str], batches_checked: int, manual_checked: int) -> DecisionVerification:
    """The lending records' findings as one verdict (what the app and older callers show)."""
    ok = not problems
    message = (f"decisions match their seals and the audit trail: "
               f"{fmt.counted(batches_checked, 'batch')}, "
               f"{fmt.counted(manual_checked, 'officer decision')}" if ok
               else f"{len(problems)} problem(s): " + "; ".join(problems[:5]))
    return DecisionVerification(ok, batches_checked, manual_checked, problems, message)


def verify_decisions(store: Store) -> DecisionVerification:
    """Check every batch, application, score and decision against its seal and the trail,
    naming each row that differs (``finflow audit verify`` checks the rest too)."""
    record = TrailRecord()
    with store.connect(snapshot=True) as conn:
        key = key_of(conn)
        verify_in(conn, key, visit=record.visit)
        batch_findings, _ = check_batches(conn, record)
        lending, counts = check_lending(conn, key, record)
    problems = [f.line() for f in batch_findings + lending]
    return summarise(problems, counts.get("batches", 0), counts.get("manual", 0))


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
