"""The audit trail for people: search it, check nothing was altered, export it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from finflow_core.services.access import Action
from finflow_core.services.workbench import Service
from finflow_core.store import audit_chain, decision_check
from finflow_core.store.audit_chain import AuditEntry, AuditVerification
from finflow_core.store.decision_check import DecisionVerification, TrailEvent


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    subject_type: str | None = None
    subject_id: str | None = None
    since: datetime | str | None = None
    until: datetime | str | None = None


@dataclass(frozen=True)
class VerificationReport:
    """The chain walked and every stored decision recomputed against it."""

    chain: AuditVerification
    decisions: DecisionVerification

    @property
    def ok(self) -> bool:
        return self.chain.ok and self.decisions.ok

    @property
    def message(self) -> str:
        return f"{self.chain.message}\n{self.decisions.message}"


class AuditService(Service):
    """Managers and admins read and check the trail."""

    def entries(self, filt: AuditFilter | None = None, *, limit: int | None = None,
                newest_first: bool = False) -> list[AuditEntry]:
        self.require(Action.VIEW_AUDIT)
        f = filt or AuditFilter()
        return audit_chain.audit_trail(self.ctx.store, f.subject_type, f.subject_id, f.actor, f.since,
                                       f.until, limit, action=f.action, newest_first=newest_first)

    def verify(self) -> VerificationReport:
        self.require(Action.VIEW_AUDIT)
        return VerificationReport(audit_chain.verify_audit(self.ctx.store),
                                  decision_check.verify_decisions(self.ctx.store))

    def export_csv(self, filt: AuditFilter | None = None, path: Path | None = None) -> str:
        """The matching entries as spreadsheet-safe CSV (with hashes), also written to ``path``."""
        self.require(Action.VIEW_AUDIT)
        f = filt or AuditFilter()
        return audit_chain.export_audit_csv(self.ctx.store, path, subject_type=f.subject_type,
                                            subject_id=f.subject_id, actor=f.actor, since=f.since,
                                            until=f.until, action=f.action)

    def application_trail(self, external_id: str) -> list[TrailEvent]:
        """Everything recorded about one application id, oldest first."""
        self.require(Action.VIEW_AUDIT)
        return decision_check.application_trail(self.ctx.store, external_id)

    def application_trail_csv(self, external_id: str) -> str:
        self.require(Action.VIEW_AUDIT)
        return decision_check.application_trail_csv(self.ctx.store, external_id)
