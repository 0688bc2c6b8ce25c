"""``finflow audit verify``: the chain, the anchors and every sealed row, in one snapshot.

1. the keyed chain is walked (``verify_chain``), gathering what it recorded about rows
   (``trail_record``);
2. every anchor (``anchors``) must be signed by this installation and find its entry, with
   its hash, in the chain: a cut-off tail or a re-chained log is named here;
3. users, strategies, model versions (and their files), batches, applications, scores and
   decisions are checked against their seals and the record (``verify_records``,
   ``verify_batches``), and so are the model lifecycle's proposals, experiments, arms,
   shadow scores, outcome files and outcomes (``verify_lifecycle``).

Every problem is a :class:`~finflow_core.store.trail_record.Finding` naming its table and
row. Nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, inspect

from finflow_core.security.keys import InstallationKey
from finflow_core.store.anchors import Anchor, read_anchors
from finflow_core.store.engine import Store
from finflow_core.store.tables import metadata
from finflow_core.store.trail_record import Finding, Recorded, TrailRecord
from finflow_core.store.verify_batches import check_lending
from finflow_core.store.verify_chain import AuditVerification, verify_in
from finflow_core.store.verify_lifecycle import check_lifecycle
from finflow_core.store.verify_records import (
    check_batches,
    check_models,
    check_strategies,
    check_users,
)

SHOWN_ANCHORS = 3


@dataclass(frozen=True)
class AnchorCheck:
    """How many anchors were found and whether the newest one agrees with the chain."""

    found: int
    valid: int
    latest: Anchor | None
    message: str


@dataclass(frozen=True)
class IntegrityReport:
    """The chain, the anchors and the rows: ``ok`` when nothing at all was found."""

    chain: AuditVerification
    anchors: AnchorCheck
    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    manual_decisions: int = 0

    @property
    def ok(self) -> bool:
        return self.chain.ok and not self.findings

    def lines(self) -> list[str]:
        """The report as a person reads it: a summary, then one line per problem."""
        rows = ", ".join(f"{t} {n:,}" for t, n in self.checked.items())
        head = [self.chain.message, self.anchors.message, f"rows checked: {rows or 'none'}"]
        if self.findings:
            head.append(f"{len(self.findings)} problem(s):")
        return head + [f"  {f.line()}" for f in self.findings]


def verify_integrity(store: Store, key: InstallationKey, *, anchor_dir: Path | None = None,
                     extra_anchors: Sequence[tuple[str, Anchor | str]] = (),
                     folder_of: Callable[[str], Path] = Path,
                     model_files: bool = True) -> IntegrityReport:
    """Check everything (see the module docstring); ``extra_anchors`` are anchors given by
    hand (a file, or a line pasted from a ticket), checked like those in ``anchor_dir``."""
    anchors = [*(read_anchors(anchor_dir) if anchor_dir is not None else []), *extra_anchors]
    wanted = {a.seq for _, a in anchors if isinstance(a, Anchor)}
    record = TrailRecord()
    with store.connect(snapshot=True) as conn:
        gone = missing_tables(conn)
        if gone:  # nothing can be walked or compared: say what is gone, check nothing else
            return IntegrityReport(AuditVerification(
                False, 0, None, "tables_missing",
                f"the database lacks table(s) {', '.join(gone)} (dropped, or not a complete "
                "FinFlow database): nothing else could be checked. Restore a backup with "
                "`finflow restore --from BACKUP`", key_fingerprint=key.fingerprint),
                AnchorCheck(len(anchors), 0, None, "anchors not checked: tables are missing"),
                [Finding(t, "-", "missing", "the table is missing") for t in gone])
        chain = verify_in(conn, key, wanted=wanted, visit=record.visit)
        found, check = _check_anchors(anchors, chain, key, anchor_dir)
        found += _first_anchor_kept(anchors, record.anchors_started, anchor_dir)
        checked: dict[str, int] = {"audit_log": chain.entries}
        if chain.problem != "wrong_key":  # with another key every row would fail
            found += _check_rows(conn, key, record, checked, folder_of, model_files)
    manual = checked.pop("manual", 0)
    return IntegrityReport(chain, check, found, checked, manual)


def missing_tables(conn: Connection) -> list[str]:
    """FinFlow's tables that the database does not have (a ``DROP TABLE`` by its writer)."""
    present = set(inspect(conn).get_table_names())
    return [t.name for t in metadata.sorted_tables if t.name not in present]


def _check_rows(conn: Connection, key: InstallationKey, record: TrailRecord,
                checked: dict[str, int], folder_of: Callable[[str], Path],
                model_files: bool) -> list[Finding]:
    found: list[Finding] = []
    for table, (more, n) in (
        ("users", check_users(conn, key, record)),
        ("strategies", check_strategies(conn, key, record)),
        ("model_versions", check_models(conn, key, record, folder_of=folder_of,
                                        files=model_files)),
        ("batches", check_batches(conn, record)),
    ):
        found += more
        checked[table] = n
    lending, counts = check_lending(conn, key, record)
    checked.update({t: counts.get(t, 0) for t in ("applications", "scores", "decisions", "manual")})
    lifecycle, counts = check_lifecycle(conn, key, record)
    checked.update(counts)
    return found + lending + lifecycle


def _first_anchor_kept(anchors: Sequence[tuple[str, Anchor | str]], started: Recorded | None,
                       folder: Path | None) -> list[Finding]:
    """The anchor the chain says its anchors began with must still be there: without it, the
    folder was emptied (the next start anchors afresh, and a cut-off tail goes unseen)."""
    if started is None:
        return []
    first = int(started.details.get("first_anchor_seq", 0))
    if any(isinstance(a, Anchor) and a.seq == first for _, a in anchors):
        return []
    was = started.details.get("folder", "")
    where = f" in {folder}" if folder is not None else ""
    return [Finding("anchors", f"entry {first}", "removed",
                    f"audit entry {started.seq} records that anchors began with one of entry "
                    f"{first} (in {was}), but no such anchor is found{where}: anchors were "
                    "deleted, so a cut-off tail could go unseen; or the folder was moved without "
                    f"them: copy the earlier anchor files into {folder or 'the anchor folder'}")]


def _check_anchors(anchors: Sequence[tuple[str, Anchor | str]], chain: AuditVerification,
                   key: InstallationKey, folder: Path | None) -> tuple[list[Finding], AnchorCheck]:
    found: list[Finding] = []
    valid: list[tuple[str, Anchor]] = []
    for name, anchor in anchors:
        if isinstance(anchor, str):
            found.append(Finding("anchors", name, "unreadable", anchor))
        elif anchor.key != key.fingerprint:
            found.append(Finding("anchors", name, "wrong_key", f"was signed with key {anchor.key}; "
                                 f"this installation's key is {key.fingerprint}"))
        elif not anchor.signed_by(key):
            found.append(Finding("anchors", name, "forged", "its signature does not match: it was "
                                 "edited, or made without this installation's key"))
        else:
            valid.append((name, anchor))
    where = f" in {folder}" if folder is not None else ""
    if not valid:
        message = (f"no anchor found{where}: a cut-off tail cannot be ruled out (run `finflow "
                   "audit anchor` and keep its line)") if not anchors else \
            f"no valid anchor{where}: see the problems below"
        return found, AnchorCheck(len(anchors), 0, None, message)
    top = chain.head_seq or 0
    disagree: list[Finding] = []
    for name, a in sorted(valid, key=lambda v: v[1].seq, reverse=True):
        stored = chain.hashes.get(a.seq)
        if stored is None and a.seq > top:
            disagree.append(Finding("audit_log", f"entries {top + 1} to {a.seq}", "truncated",
                                    f"anchor {name} (made {a.at}) records entry {a.seq}, but the "
                                    f"log ends at entry {top}: the newest entries were deleted "
                                    "and the head moved back"))
        elif stored is None:
            disagree.append(Finding("audit_log", str(a.seq), "missing", f"anchor {name} (made "
                                    f"{a.at}) records entry {a.seq}, which is missing"))
        elif stored != a.hash:
            disagree.append(Finding("audit_log", str(a.seq), "rewritten", f"differs from anchor "
                                    f"{name} (made {a.at}): the trail was rewritten (re-chained) "
                                    "up to there"))
    latest = max((a for _, a in valid), key=lambda a: a.seq)
    found += disagree[:SHOWN_ANCHORS]
    if len(disagree) > SHOWN_ANCHORS:
        found.append(Finding("anchors", f"{len(disagree) - SHOWN_ANCHORS} older", "disagree",
                             "older anchors disagree with the chain as well"))
    verdict = "disagree with the chain" if disagree else "agree with the chain"
    message = (f"{len(valid)} anchor(s){where} {verdict}; the newest: entry {latest.seq} at "
               f"{latest.at}")
    return found, AnchorCheck(len(anchors), len(valid), latest, message)
