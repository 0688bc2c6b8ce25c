"""The audit trail for people: search it, check nothing was altered, anchor it, export it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection

from finflow_core.lending.config import Config
from finflow_core.security.keys import InstallationKey, load_key
from finflow_core.services.access import Action
from finflow_core.services.base import Service
from finflow_core.services.context import Context
from finflow_core.store import audit_chain, decision_check, registry
from finflow_core.store.anchors import (
    Anchor,
    AnchorError,
    anchor_folder,
    check_anchor_out,
    make_anchor,
    parse_anchor,
    write_anchor,
    write_anchor_file,
)
from finflow_core.store.audit_chain import AuditEntry, AuditVerification
from finflow_core.store.decision_check import DecisionVerification, TrailEvent
from finflow_core.store.integrity import IntegrityReport, verify_integrity
from finflow_core.store.legacy import Adoption, adopt_legacy
from finflow_core.store.seals import bound_key
from finflow_core.store.trail_record import Finding

#: Tables whose findings the app shows under "Decisions".
LENDING_TABLES = ("batches", "applications", "scores", "decisions")


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
    """The chain walked, checked against the anchors, and every sealed row checked."""

    integrity: IntegrityReport

    @property
    def ok(self) -> bool:
        return self.integrity.ok

    @property
    def chain(self) -> AuditVerification:
        return self.integrity.chain

    @property
    def findings(self) -> list[Finding]:
        return self.integrity.findings

    @property
    def decisions(self) -> DecisionVerification:
        """The lending records' part (what the app shows under "Decisions")."""
        problems = [f.line() for f in self.findings if f.table in LENDING_TABLES]
        checked = self.integrity.checked
        return decision_check.summarise(problems, checked.get("batches", 0),
                                        self.integrity.manual_decisions)

    @property
    def message(self) -> str:
        return "\n".join(self.integrity.lines())


@dataclass(frozen=True)
class AnchorExport:
    """An anchor just made: the line for a ticket, and where it was written."""

    anchor: Anchor
    paths: tuple[Path, ...]

    @property
    def line(self) -> str:
        return self.anchor.line()


def anchor_dir(config: Config) -> Path:
    """Where anchors go (``audit.anchor_dir``; outside the data folder)."""
    return anchor_folder(config)


def store_key(ctx: Context) -> InstallationKey:
    """The key the context's store chains and seals with."""
    return bound_key(ctx.store) or load_key(ctx.config)


def anchor_after_write(ctx: Context) -> str | None:
    """Export the chain's head after a stored batch; a warning when it could not be written
    (the batch is stored either way: anchor it later with ``finflow audit anchor``)."""
    try:
        write_anchor(make_anchor(ctx.store, store_key(ctx)), anchor_dir(ctx.config))
    except AnchorError as exc:
        return exc.message
    return None


@contextmanager
def anchored_write(ctx: Context) -> Iterator[Connection]:
    """``ctx.store.begin()``, with the chain's head anchored once it has committed.

    For the rare changes that decide who may do what and how cases are routed (users and
    roles, promotions, band edges): cutting them off the end of the log and moving the head
    back is then named by the anchor, not only through the rows they sealed. The change is
    stored even when the anchor cannot be written (verify reports the missing anchor)."""
    with ctx.store.begin() as conn:
        yield conn
    anchor_after_write(ctx)


class AuditService(Service):
    """Managers and admins read, check and anchor the trail."""

    def entries(self, filt: AuditFilter | None = None, *, limit: int | None = None,
                newest_first: bool = False) -> list[AuditEntry]:
        self.require(Action.VIEW_AUDIT)
        f = filt or AuditFilter()
        return audit_chain.audit_trail(self.ctx.store, f.subject_type, f.subject_id, f.actor, f.since,
                                       f.until, limit, action=f.action, newest_first=newest_first)

    def verify(self, anchors: Sequence[str] = ()) -> VerificationReport:
        """Check the chain, every anchor in ``audit.anchor_dir`` and those given (anchor
        files, or lines pasted from a ticket), and every sealed row."""
        self.require(Action.VIEW_AUDIT)
        extra = [_given(text) for text in anchors]
        config = self.ctx.config
        return VerificationReport(verify_integrity(
            self.ctx.store, store_key(self.ctx), anchor_dir=anchor_dir(config),
            extra_anchors=extra, folder_of=lambda f: registry.model_folder(f, config.paths.models_dir)))

    def anchor(self, out: Path | None = None) -> AnchorExport:
        """Sign the chain's head now and write it to ``audit.anchor_dir`` (and ``out``)."""
        self.require(Action.VIEW_AUDIT)
        if out is not None:
            check_anchor_out(Path(out))  # before the folder's anchor is written
        made = make_anchor(self.ctx.store, store_key(self.ctx))
        paths = [write_anchor(made, anchor_dir(self.ctx.config))]
        if out is not None:
            paths.append(write_anchor_file(made, Path(out)))
        return AnchorExport(made, tuple(paths))

    def seal_legacy(self) -> Adoption:
        """Adopt rows from before FinFlow sealed them (admin): sealed as they are now, and
        recorded in one entry (see ``store.legacy``); then anchored."""
        self.require(Action.MANAGE_USERS)
        adoption = adopt_legacy(self.ctx.store, self.actor.username)
        if adoption.seq is not None:
            anchor_after_write(self.ctx)
        return adoption

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


def _given(text: str) -> tuple[str, Anchor | str]:
    """An anchor given by hand: a file name, or the anchor's line itself."""
    path = Path(text)
    try:
        is_file = path.is_file()
    except OSError:  # a pasted line is no file name
        is_file = False
    label = path.name if is_file else "given on the command line"
    try:
        return label, parse_anchor(path.read_text(encoding="utf-8") if is_file else text)
    except (OSError, UnicodeDecodeError) as exc:
        return label, f"unreadable ({exc})"
    except AnchorError as exc:
        return label, exc.message
