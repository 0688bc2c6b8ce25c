"""The audit trail: an append-only, keyed hash chain of everything that changed.

The format (canonical form, keyed hash) is in ``chain_hash``; checking it is in
``verify_chain``; this module appends entries and reads them back. The single
``audit_head`` row keeps the last seq and hash (so deleting the newest entries, which
leaves an intact but shorter chain, is caught) and the fingerprint of the key the chain is
keyed with (so a wrong key file is named at the first write, not after a week of entries).
A cut-off tail with the head moved back to match is what the anchors catch
(``store.anchors``: the signed head, exported where the database's writer cannot reach).

Writers call :func:`append_audit` inside their own transaction, so the change and its
audit entry commit or roll back together. Appends are serialised: on SQLite by the write
lock every ``store.begin()`` takes; on PostgreSQL by ``SELECT ... FOR UPDATE`` on the head
row, held until commit. Call ``append_audit`` near the end of a transaction (it makes every
other audited writer wait), or call :func:`lock_chain` first thing — but not both patterns
on the same rows, or PostgreSQL transactions can deadlock.

A chain written by an older FinFlow (unkeyed) is continued keyed: the first append made
with a key writes a ``chain_keyed`` entry first, naming how many entries came before.
"""

from __future__ import annotations

import csv
import hmac
import io
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Select, insert, select, update

from finflow_core.errors import FinFlowError
from finflow_core.lending.spreadsheet import spreadsheet_safe
from finflow_core.security.keys import InstallationKey
from finflow_core.store.chain_hash import (
    CSV_FIELDS,
    HASHED_FIELDS,
    REKEY_ACTION,
    AuditEntry,
    canonical_json,
    entry_hash,
)
from finflow_core.store.engine import Store
from finflow_core.store.seals import key_of
from finflow_core.store.tables import (
    READ_ONLY_OPTION,
    audit_head,
    audit_log,
    iso_utc,
    parse_utc,
    utcnow,
)
from finflow_core.store.verify_chain import AuditVerification, verify_audit, verify_entries

__all__ = [
    "CSV_FIELDS", "HASHED_FIELDS", "AuditChainError", "AuditEntry", "AuditVerification",
    "append_audit", "audit_trail", "canonical_json", "entry_hash", "export_audit_csv",
    "lock_chain", "verify_audit", "verify_entries",
]

_MAX_LENGTHS = {"actor": 64, "action": 64, "subject_type": 64, "subject_id": 255,
                "model_version": 128}


class AuditChainError(FinFlowError):
    """The audit chain cannot be appended to (head row missing, or another key)."""

    exit_code = 12


class _Named(Protocol):
    @property
    def username(self) -> str: ...


# -- appending ----------------------------------------------------------------------------

def lock_chain(conn: Connection) -> tuple[int, str]:
    """Lock the chain's head for this transaction and return its (seq, hash).

    On PostgreSQL this is ``SELECT ... FOR UPDATE``; on SQLite the transaction already holds
    the database write lock. Use it first thing in a transaction that must not interleave
    with other audited writes (e.g. a check-then-write on users).
    """
    row = _locked_head(conn)
    return int(row.seq), str(row.hash)


def _locked_head(conn: Connection) -> Any:
    _require_write_transaction(conn)
    query = select(audit_head.c.seq, audit_head.c.hash, audit_head.c.key_fingerprint)
    row = conn.execute(query.where(audit_head.c.id == 1).with_for_update()).first()
    if row is None:
        raise AuditChainError(
            "the audit_head row is missing, so nothing can be audited: run `finflow audit "
            "verify` and restore the database from a backup",
        )
    return row


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
    key = key_of(conn)
    seq, prev_hash, moment = _keyed_head(conn, key, at)
    return _insert(conn, key, {**fields, "seq": seq + 1, "at": moment}, prev_hash)


def _insert(conn: Connection, key: InstallationKey, fields: dict[str, Any],
            prev_hash: str) -> AuditEntry:
    digest = entry_hash(prev_hash, fields, key.chain_key)
    conn.execute(insert(audit_log).values(**fields, prev_hash=prev_hash, hash=digest))
    conn.execute(update(audit_head).where(audit_head.c.id == 1).values(
        seq=fields["seq"], hash=digest, key_fingerprint=key.fingerprint))
    return AuditEntry(prev_hash=prev_hash, hash=digest, **fields)


def _keyed_head(conn: Connection, key: InstallationKey,
                at: datetime | None) -> tuple[int, str, str]:
    """The locked head and the entry's time (taken under the lock, so it follows seq order),
    after checking the chain is keyed with ``key`` (an unkeyed chain is continued keyed with
    a ``chain_keyed`` entry first)."""
    head = _locked_head(conn)
    moment = iso_utc(at or utcnow())
    seq, prev_hash, recorded = int(head.seq), str(head.hash), head.key_fingerprint
    if recorded == key.fingerprint or seq == 0:
        return seq, prev_hash, moment
    if recorded:
        raise AuditChainError(
            f"the audit chain is keyed with key {recorded}, but this installation's key "
            f"({key.source}) is {key.fingerprint}: point audit.key_file or FINFLOW_KEY_FILE at "
            "the key this installation was set up with. Nothing was written.",
            recorded=recorded, fingerprint=key.fingerprint)
    last = conn.execute(select(audit_log).where(audit_log.c.seq == seq)).mappings().first()
    if last is not None and hmac.compare_digest(
            entry_hash(str(last["prev_hash"]), last, key.chain_key), str(last["hash"])):
        return seq, prev_hash, moment  # keyed already (only the fingerprint was missing)
    rekey = {
        "seq": seq + 1, "at": moment, "actor": "system", "action": REKEY_ACTION,
        "subject_type": "audit", "subject_id": "chain", "model_version": None,
        "details": canonical_json({
            "key_fingerprint": key.fingerprint, "legacy_entries": seq,
            "legacy_head_hash": prev_hash,
            "note": f"entries 1 to {seq} were written without a key (an older FinFlow); "
                    "every entry from this one on is keyed",
        }),
    }
    entry = _insert(conn, key, rekey, prev_hash)
    return entry.seq, entry.hash, moment


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
