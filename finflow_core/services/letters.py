"""Decline letters: an adverse-action notice for every declined application, automatic or
an officer's, one at a time or a batch at once; every generation is audited.

A letter gives the decision, its date and at most four principal reasons in the lender's
words. The reasons are the application's stored reason codes (the model's adverse
factors, strongest first); for an officer's decline, the codes the officer chose come
first. An officer's own wording is never copied into a letter (it may hold internal
notes), and no reason ever names a protected characteristic. The lender's name, address
and contact come from the config's ``lender:`` section; the template from
``letters.template`` (else the one FinFlow ships).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from finflow_core import formatting as fmt
from finflow_core.errors import ConfigError, Conflict, NotFound
from finflow_core.lending.config import Config, finflow_home
from finflow_core.lending.explain import statement_of
from finflow_core.lending.terms import DecisionKind
from finflow_core.reports.letters import (
    Letter,
    LetterTemplate,
    load_template,
    render_html,
    render_pdf,
)
from finflow_core.services.access import Action
from finflow_core.services.base import Service
from finflow_core.store import cases
from finflow_core.store.audit_chain import append_audit

#: Principal reasons a notice gives at most (what adverse-action rules ask for).
MAX_REASONS = 4
#: When an application has no stored adverse factor at all (never for a scored decline).
OVERALL = "Our overall assessment of the credit risk of the application"


class LetterFormat(StrEnum):
    PDF = "pdf"
    HTML = "html"


MIME = {LetterFormat.PDF: "application/pdf", LetterFormat.HTML: "text/html"}


@dataclass(frozen=True)
class LetterFile:
    """A generated document: one notice, or a batch's notices a page each."""

    file_name: str
    mime: str
    data: bytes
    letters: int
    sha256: str


class LetterService(Service):
    """Officers download a declined case's notice; officers and managers a whole batch's."""

    def case(self, application_id: int, kind: LetterFormat | str = LetterFormat.PDF) -> LetterFile:
        """The notice of one declined application (audited as ``letter_issued``)."""
        self.require(Action.VIEW_QUEUE)
        kind = LetterFormat(kind)
        with self.ctx.store.connect() as conn:
            rows = cases.declined(conn, application_id=application_id)
            if not rows and cases.application(conn, application_id) is None:
                raise NotFound(f"no application {application_id}", application=application_id)
        if not rows:
            raise Conflict(f"application {application_id} is not declined: only a declined "
                           "application gets a decline letter", reason="not_declined")
        letter, picked = self._letter(rows[0])
        out = _document([letter], self._template(), kind, f"decline-letter-{_safe(rows[0].external_id)}")
        with self.ctx.store.begin() as conn:
            append_audit(conn, self.actor.username, "letter_issued", "application", rows[0].external_id, {
                "application": rows[0].id, "decision": rows[0].decision_id, "format": kind,
                "sha256": out.sha256, "reasons": picked}, at=self.ctx.clock())
        return out

    def batch(self, batch_id: str, kind: LetterFormat | str = LetterFormat.PDF) -> LetterFile:
        """Every declined application of a batch, a page each (audited as
        ``letters_issued`` with the applications' digest)."""
        self.require(Action.VIEW_QUEUE)
        kind = LetterFormat(kind)
        with self.ctx.store.connect() as conn:
            if not cases.uploaded_at(conn, batch_id):
                raise NotFound(f"no batch {batch_id}", batch=batch_id)
            rows = cases.declined(conn, batch_id=batch_id)
        if not rows:
            raise Conflict(f"batch {batch_id} has no declined application", reason="none_declined")
        letters = [self._letter(r)[0] for r in rows]
        out = _document(letters, self._template(), kind, f"decline-letters-{_safe(batch_id)}")
        ids = hashlib.sha256("\n".join(f"{r.id}:{r.decision_id}" for r in rows).encode()).hexdigest()
        with self.ctx.store.begin() as conn:
            append_audit(conn, self.actor.username, "letters_issued", "batch", batch_id, {
                "format": kind, "letters": len(rows), "sha256": out.sha256,
                "applications_sha256": ids}, at=self.ctx.clock())
        return out

    def declined_count(self, batch_id: str) -> int:
        """How many letters a batch's download holds."""
        self.require(Action.VIEW_QUEUE)
        with self.ctx.store.connect() as conn:
            return len(cases.declined(conn, batch_id=batch_id))

    def _template(self) -> LetterTemplate:
        return template_of(self.ctx.config)

    def _letter(self, row: Any) -> tuple[Letter, list[str]]:
        config = self.ctx.config
        lender = config.lender
        if lender is None:
            raise ConfigError("decline letters need the lender's details: add a lender: section "
                              "(name, address, contact) to the config", key="lender")
        tz = config.display.timezone
        data = json.loads(row.data)
        applied = data.get(config.date_column or "", "") if config.date_column else ""
        stored = json.loads(row.reasons) if row.reasons else []
        chosen = principal_reasons(stored, row.reason, DecisionKind(row.kind), config)
        letter = Letter(
            application_id=fmt.clean(str(row.external_id)),
            reference=f"decision {row.decision_id}",
            amount=fmt.money(row.amount, config.economics.currency),
            application_date=fmt.day(applied, tz) if applied else fmt.day(row.uploaded_at, tz),
            decision="declined", decision_date=fmt.day(row.decided_at, tz),
            date=fmt.day(self.ctx.clock(), tz), lender_name=lender.name,
            lender_address=lender.address, lender_contact=lender.contact,
            reasons=tuple(statement_of(r, config) for r in chosen) or (OVERALL,),
        )
        return letter, [str(r["feature"]) for r in chosen]


def principal_reasons(stored: list[dict[str, Any]], decision_reason: str, kind: DecisionKind,
                      config: Config) -> list[dict[str, Any]]:
    """At most four of the stored reason codes: for an officer's decline the ones their
    reason names first, then the model's strongest; never a protected characteristic."""
    protected = set(config.protected_columns)
    usable = [r for r in stored if r.get("feature") not in protected and r.get("text")]
    if kind == DecisionKind.MANUAL:
        named = [r for r in usable if str(r["text"]) in (decision_reason or "")]
        usable = named + [r for r in usable if r not in named]
    return usable[:MAX_REASONS]


def template_of(config: Config) -> LetterTemplate:
    """The configured template (relative paths against FINFLOW_HOME), else the shipped one."""
    written = config.letters.template
    if written is None:
        return load_template()
    path = Path(written).expanduser()
    return load_template(path if path.is_absolute() else finflow_home() / path)


def _document(letters: list[Letter], template: LetterTemplate, kind: LetterFormat,
              stem: str) -> LetterFile:
    data = (render_pdf(letters, template) if kind is LetterFormat.PDF
            else render_html(letters, template).encode("utf-8"))
    return LetterFile(f"{stem}.{kind}", MIME[kind], data, len(letters), hashlib.sha256(data).hexdigest())


def _safe(name: str) -> str:
    """A file-name part: letters, digits, dot, dash and underscore only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "letter"


__all__ = ["MAX_REASONS", "LetterFile", "LetterFormat", "LetterService", "principal_reasons",
           "template_of"]
