"""The audit trail: an append-only, hash-chained log of everything that changed.

Each entry's ``hash`` is::

    sha256(prev_hash + "|" + canonical_json({seq, at, actor, action, subject_type,
                                             subject_id, model_version, details}))

where ``details`` is the stored canonical JSON *text* and canonical JSON means
``json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)``. The first
entry's ``prev_hash`` is 64 zeros. The single ``audit_head`` row keeps the last seq and
hash, so deleting the newest entries (which leaves an intact but shorter chain) is caught.

Writers call :func:`append_audit` inside their own transaction, so the change and its
audit entry commit or roll back together. Appends are serialised: on SQLite by the write
lock every ``store.begin()`` takes; on PostgreSQL by ``SELECT ... FOR UPDATE`` on the head
row, held until commit. Call ``append_audit`` near the end of a transaction (it makes every
other audited writer wait), or call :func:`lock_chain` first thing — but not both patterns
on the same rows, or PostgreSQL transactions can deadlock.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Protocol

from sqlalchemy import Connection, Select, insert, select, update

from finflow_core.errors import FinFlowError
from finflow_core.lending.spreadsheet import spreadsheet_safe
from finflow_core.store.engine import READ_ONLY_OPTION, Store
from finflow_core.store.tables import (
    GENESIS_HASH,
    audit_head,
    audit_log,
    iso_utc,
    parse_utc,
    utcnow,
)

HASHED_FIELDS: tuple[str, ...] = (
    "seq", "at", "actor", "action", "subject_type", "subject_id", "model_version", "details",
)
CSV_FIELDS: tuple[str, ...] = HASHED_FIELDS + ("prev_hash", "hash")
_MAX_LENGTHS = {"actor": 64, "action": 64, "subject_type": 64, "subject_id": 255,
                "model_version": 128}
_PAGE = 2000

Problem = Literal["changed", "removed", "inserted", "truncated", "head_missing"]


class AuditChainError(FinFlowError):
    """The audit chain cannot be appended to (its head row is missing)."""

    exit_code = 12


class _Named(Protocol):
    @property
    def username(self) -> str: ...


@dataclass(frozen=True)
class AuditEntry:
    """One audit row as stored (``details`` is the canonical JSON text)."""

    seq: int
    at: str
    actor: str
    action: str
    subject_type: str
    subject_id: str
    model_version: str | None
    details: str
    prev_hash: str
    hash: str

    @property
    def detail(self) -> dict[str, Any]:
        """``details`` parsed back into a dict."""
        return json.loads(self.details)

    def as_dict(self) -> dict[str, Any]:
        """A plain dict with ``details`` parsed back into a dict."""
        row = asdict(self)
        row["details"] = self.detail
        return row


@dataclass(frozen=True)
class AuditVerification:
    """Outcome of walking the chain; ``first_bad_seq`` names the first untrustworthy entry."""

    ok: bool
    entries: int
    first_bad_seq: int | None
    problem: Problem | None
    message: str
    head_seq: int | None = None


# -- canonical form and hashing -----------------------------------------------------------

def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, dates/decimals/numpy scalars converted."""
    return json.dumps(
        _jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        allow_nan=False,
    )


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_jsonable(v) for v in value), key=canonical_json)
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal | Path):
        return str(value)
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, pandas arrays
        return _jsonable(value.tolist())
    if hasattr(value, "item"):
        return _jsonable(value.item())
    raise TypeError(
        f"audit details cannot hold a {type(value).__name__}: convert it to a str, number, "
        "list or dict first"
    )


def entry_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """The chain hash of one entry (see the module docstring for the exact formula)."""
    payload = canonical_json({name: fields[name] for name in HASHED_FIELDS})
    return hashlib.sha256(f"{prev_hash}|{payload}".encode()).hexdigest()


# -- appending ----------------------------------------------------------------------------

def lock_chain(conn: Connection) -> tuple[int, str]:
    """Lock the chain's head for this transaction and return its (seq, hash).

    On PostgreSQL this is ``SELECT ... FOR UPDATE``; on SQLite the transaction already holds
    the database write lock. Use it first thing in a transaction that must not interleave
    with other audited writes (e.g. a check-then-write on users).
    """
    _require_write_transaction(conn)
    query = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
    row = conn.execute(query.with_for_update()).first()
    if row is None:
        raise AuditChainError(
            "the audit_head row is missing, so nothing can be audited: run verify_audit and "
            "restore the database from a backup",
        )
    return int(row.seq), str(row.hash)


def append_audit(
    conn: Connection,
    actor_name: str | _Named,
    action: str,
    subject_type: str,
    subject_id: str | int,
    details: Mapping[str, Any] | None = None,
    model_version: str | None = None,
    *,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry inside the caller's open write transaction and return it."""
    actor = actor_name if isinstance(actor_name, str) else actor_name.username
    fields: dict[str, Any] = {
        "actor": actor,
        "action": action,
        "subject_type": subject_type,
        "subject_id": str(subject_id),
        "model_version": model_version or None,
        "details": canonical_json(dict(details or {})),
    }
    _check_lengths(fields)
    seq, prev_hash = lock_chain(conn)
    fields["seq"] = seq + 1
    fields["at"] = iso_utc(at or utcnow())  # taken under the lock, so it follows seq order
    digest = entry_hash(prev_hash, fields)
    conn.execute(insert(audit_log).values(**fields, prev_hash=prev_hash, hash=digest))
    conn.execute(
        update(audit_head).where(audit_head.c.id == 1).values(seq=fields["seq"], hash=digest)
    )
    return AuditEntry(prev_hash=prev_hash, hash=digest, **fields)


def _require_write_transaction(conn: Connection) -> None:
    if conn.get_execution_options().get(READ_ONLY_OPTION):
        raise RuntimeError("audit entries need a write transaction: use store.begin()")
    if not conn.in_transaction():
        raise RuntimeError(
            "append_audit must run inside the caller's transaction (with store.begin() as "
            "conn: ...) so the change and its audit entry commit together"
        )


def _check_lengths(fields: Mapping[str, Any]) -> None:
    for name, limit in _MAX_LENGTHS.items():
        value = fields[name]
        if value is None:
            continue
        if name != "subject_id" and not value:
            raise ValueError(f"audit field {name!r} must not be empty")
        if len(value) > limit:
            raise ValueError(f"audit field {name!r} is longer than {limit} characters: {value!r}")


# -- verification -------------------------------------------------------------------------

def verify_audit(store: Store) -> AuditVerification:
    """Walk the whole chain in one consistent snapshot and report the first bad entry."""
    with store.connect(snapshot=True) as conn:
        head = conn.execute(
            select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
        ).first()
        head_pair = None if head is None else (int(head.seq), str(head.hash))
        result = _check_chain(_stored_rows(conn), head_pair)
    if result.ok and head_pair is None:
        return AuditVerification(
            False, result.entries, None, "head_missing",
            "the audit_head row is missing: the log may have been truncated; restore a backup",
        )
    return result


def verify_entries(
    entries: Iterable[Mapping[str, Any]], head: tuple[int, str] | None = None
) -> AuditVerification:
    """Verify exported entries (e.g. rows of :func:`export_audit_csv` read back with
    ``csv.DictReader``); pass ``head=(seq, hash)`` to also detect a cut-off tail."""
    return _check_chain((_normalise_row(e) for e in entries), head)


def _stored_rows(conn: Connection) -> Iterator[dict[str, Any]]:
    last = 0
    while True:
        page = conn.execute(
            select(audit_log).where(audit_log.c.seq > last).order_by(audit_log.c.seq).limit(_PAGE)
        ).mappings().all()
        if not page:
            return
        yield from (dict(r) for r in page)
        last = int(page[-1]["seq"])


def _normalise_row(entry: Mapping[str, Any]) -> dict[str, Any]:
    row = {name: entry[name] for name in CSV_FIELDS}
    row["seq"] = int(row["seq"])
    row["model_version"] = row["model_version"] or None
    if not isinstance(row["details"], str):
        row["details"] = canonical_json(row["details"])
    return row


def _check_chain(
    rows: Iterable[Mapping[str, Any]], head: tuple[int, str] | None
) -> AuditVerification:
    prev_seq, prev_hash, count = 0, GENESIS_HASH, 0
    head_seq = None if head is None else head[0]

    def bad(seq: int, problem: Problem, message: str) -> AuditVerification:
        return AuditVerification(False, count, seq, problem, message, head_seq)

    for row in rows:
        seq = int(row["seq"])
        if head_seq is not None and seq > head_seq:
            return bad(seq, "inserted", f"entry {seq} lies beyond the last entry FinFlow "
                       f"appended ({head_seq}): it was added outside FinFlow")
        if seq <= prev_seq:
            return bad(seq, "inserted", f"entry {seq} appears again or out of order after "
                       f"entry {prev_seq}")
        if seq != prev_seq + 1:
            gap = f"{prev_seq + 1}" if seq == prev_seq + 2 else f"{prev_seq + 1} to {seq - 1}"
            return bad(prev_seq + 1, "removed", f"entry {gap} is missing (deleted)")
        if entry_hash(str(row["prev_hash"]), row) != row["hash"]:
            return bad(seq, "changed", f"entry {seq} was changed after it was written "
                       "(its content no longer matches its hash)")
        if row["prev_hash"] != prev_hash:
            culprit = prev_seq or seq
            return bad(culprit, "changed", f"entry {seq} does not link to entry {prev_seq}: "
                       f"entry {culprit} was rewritten (or the link of entry {seq} altered)")
        prev_seq, prev_hash, count = seq, str(row["hash"]), count + 1
    if head is not None and prev_seq < head[0]:
        return bad(prev_seq + 1, "truncated", f"entries {prev_seq + 1} to {head[0]} are missing: "
                   "the newest part of the log was deleted")
    if head is not None and prev_hash != head[1]:
        return bad(prev_seq, "changed", f"entry {prev_seq} was rewritten: its hash differs from "
                   "the one recorded when it was appended")
    return AuditVerification(True, count, None, None,
                             f"audit chain intact: {count} entries verified", head_seq)


# -- search and export --------------------------------------------------------------------

def audit_trail(
    store: Store,
    subject_type: str | None = None,
    subject_id: str | int | None = None,
    actor: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    limit: int | None = None,
    *,
    action: str | None = None,
    newest_first: bool = False,
) -> list[AuditEntry]:
    """Entries matching all given filters (``since <= at < until``), oldest first by default.

    Read-only and unchecked: the audit service checks ``view_audit`` first.
    """
    query = _filtered(subject_type, subject_id, actor, since, until, limit, action, newest_first)
    with store.connect() as conn:
        return [_entry(r) for r in conn.execute(query).mappings()]


def export_audit_csv(
    store: Store,
    path: str | Path | None = None,
    *,
    excel_safe: bool = True,
    subject_type: str | None = None,
    subject_id: str | int | None = None,
    actor: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    action: str | None = None,
) -> str:
    """The matching entries as CSV text (with hashes), also written to ``path`` if given.

    ``excel_safe`` prefixes ``'`` to cells a spreadsheet would run as a formula (ids taken
    from uploaded files could be hostile). Such a file is for reading; export with
    ``excel_safe=False`` to re-check it later with :func:`verify_entries`.
    """
    query = _filtered(subject_type, subject_id, actor, since, until, None, action, False)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    with store.connect() as conn:
        for row in conn.execute(query).mappings():
            cells = {k: "" if row[k] is None else str(row[k]) for k in CSV_FIELDS}
            if excel_safe:
                cells = {k: spreadsheet_safe(v) for k, v in cells.items()}
            writer.writerow(cells)
    text = buffer.getvalue()
    if path is not None:
        Path(path).write_text(text, encoding="utf-8", newline="")
    return text


def _filtered(
    subject_type: str | None,
    subject_id: str | int | None,
    actor: str | None,
    since: datetime | str | None,
    until: datetime | str | None,
    limit: int | None,
    action: str | None,
    newest_first: bool,
) -> Select[Any]:
    c = audit_log.c
    query = select(audit_log)
    if subject_type is not None:
        query = query.where(c.subject_type == subject_type)
    if subject_id is not None:
        query = query.where(c.subject_id == str(subject_id))
    if actor is not None:
        query = query.where(c.actor == actor)
    if action is not None:
        query = query.where(c.action == action)
    if since is not None:
        query = query.where(c.at >= _as_iso(since))
    if until is not None:
        query = query.where(c.at < _as_iso(until))
    query = query.order_by(c.seq.desc() if newest_first else c.seq)
    return query if limit is None else query.limit(limit)


def _as_iso(moment: datetime | str) -> str:
    return iso_utc(moment if isinstance(moment, datetime) else parse_utc(moment))


def _entry(row: Mapping[Any, Any]) -> AuditEntry:
    return AuditEntry(**{name: row[name] for name in CSV_FIELDS})
