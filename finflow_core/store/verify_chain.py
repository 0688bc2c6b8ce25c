"""Walking the audit chain: every entry's keyed hash, its link, the head, and where it was keyed.

A chain is keyed from its first entry (new installations) or from its ``chain_keyed``
entry (installations whose older FinFlow wrote unkeyed entries): entries before that point
are checked with the old unkeyed formula and reported as such, every entry from it on must
carry the keyed hash. An entry recomputed without the key (the documented formula, by
someone who can write the database) is therefore named as changed. What a keyed chain
alone cannot show is a cut-off tail with the head moved back to match: the anchors
(``store.anchors``) exported elsewhere catch that.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, select

from finflow_core.security.keys import InstallationKey, load_key
from finflow_core.store.chain_hash import CSV_FIELDS, REKEY_ACTION, canonical_json, entry_hash
from finflow_core.store.engine import Store
from finflow_core.store.seals import key_of
from finflow_core.store.tables import GENESIS_HASH, audit_head, audit_log

Problem = Literal["changed", "removed", "inserted", "truncated", "head_missing", "unkeyed",
                  "wrong_key", "tables_missing"]
Visit = Callable[[Mapping[str, Any]], None]
_PAGE = 2000


@dataclass(frozen=True)
class AuditVerification:
    """Outcome of walking the chain; ``first_bad_seq`` names the first untrustworthy entry.

    ``keyed_from`` is the first keyed entry (1 for a chain keyed from the start);
    ``legacy_entries`` counts entries before it (unkeyed, written by an older FinFlow);
    ``hashes`` holds the stored hash of each entry asked for (to compare with anchors).
    """

    ok: bool
    entries: int
    first_bad_seq: int | None
    problem: Problem | None
    message: str
    head_seq: int | None = None
    keyed_from: int | None = None
    legacy_entries: int = 0
    key_fingerprint: str = ""
    hashes: dict[int, str] = field(default_factory=dict)


def verify_audit(store: Store, *, key: InstallationKey | None = None,
                 wanted: Iterable[int] = (), visit: Visit | None = None) -> AuditVerification:
    """Walk the whole chain in one consistent snapshot and report the first bad entry.

    ``visit`` sees every stored entry (as a mapping) in seq order, e.g. to collect what the
    trail recorded about stored rows; ``wanted`` names entries whose hash to report.
    """
    with store.connect(snapshot=True) as conn:
        return verify_in(conn, key or key_of(conn), wanted=wanted, visit=visit)


def verify_in(conn: Connection, key: InstallationKey, *, wanted: Iterable[int] = (),
              visit: Visit | None = None) -> AuditVerification:
    """:func:`verify_audit` on an open (snapshot) connection."""
    head = conn.execute(select(audit_head)).mappings().first()
    head_pair = None if head is None else (int(head["seq"]), str(head["hash"]))
    recorded = None if head is None else head.get("key_fingerprint")
    if recorded and recorded != key.fingerprint:
        return AuditVerification(
            False, 0, None, "wrong_key",
            f"the audit chain is keyed with key {recorded}, but this installation's key "
            f"({key.source}) is {key.fingerprint}: FinFlow is using the wrong key file (check "
            "audit.key_file and FINFLOW_KEY_FILE), or the chain's head row was edited",
            head_pair[0] if head_pair else None, key_fingerprint=key.fingerprint)
    result = check_chain(_stored_rows(conn), head_pair, key, wanted=wanted, visit=visit,
                         claims_keyed=recorded == key.fingerprint)
    if result.ok and head_pair is None:
        return AuditVerification(
            False, result.entries, None, "head_missing",
            "the audit_head row is missing: the log may have been truncated; restore a backup",
            key_fingerprint=key.fingerprint)
    return result


def verify_entries(
    entries: Iterable[Mapping[str, Any]], head: tuple[int, str] | None = None, *,
    key: InstallationKey | None = None,
) -> AuditVerification:
    """Verify exported entries (e.g. rows of ``export_audit_csv`` read back with
    ``csv.DictReader``); pass ``head=(seq, hash)`` (e.g. from an anchor) to also detect a
    cut-off tail. Needs this installation's key, like the stored chain."""
    return check_chain((_normalise_row(e) for e in entries), head, key or load_key())


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


def check_chain(rows: Iterable[Mapping[str, Any]], head: tuple[int, str] | None,
                key: InstallationKey, *, wanted: Iterable[int] = (),
                visit: Visit | None = None, claims_keyed: bool = False) -> AuditVerification:
    """The walk itself (see the module docstring for the rules); ``claims_keyed``: the head
    row says the chain is keyed with ``key``, so a chain without a keyed entry was rewritten.

    The first problem is the one reported; the walk goes on to the end so that ``visit``
    sees every entry whose own hash is valid (its content is authentic even when an
    earlier entry was tampered with) and ``hashes`` covers every entry asked for. Unkeyed
    entries are visited only once the keyed entry that continues them is reached.
    """
    chain_key = key.chain_key
    prev_seq, prev_hash, count, legacy = 0, GENESIS_HASH, 0, 0
    keyed_from: int | None = None
    head_seq = None if head is None else head[0]
    want = set(wanted)
    hashes: dict[int, str] = {}
    first: AuditVerification | None = None
    waiting: list[Mapping[str, Any]] = []

    def bad(seq: int, problem: Problem, message: str) -> None:
        nonlocal first
        if first is None:
            first = AuditVerification(False, 0, seq, problem, message, head_seq)

    for row in rows:
        seq = int(row["seq"])
        if seq <= prev_seq:
            bad(seq, "inserted", f"entry {seq} appears again or out of order after entry {prev_seq}")
            continue
        count += 1
        stored = str(row["hash"])
        if seq in want:
            hashes[seq] = stored
        if head_seq is not None and seq > head_seq:
            bad(seq, "inserted", f"entry {seq} lies beyond the last entry FinFlow appended "
                f"({head_seq}): it was added outside FinFlow")
        if seq != prev_seq + 1:
            gap = f"{prev_seq + 1}" if seq == prev_seq + 2 else f"{prev_seq + 1} to {seq - 1}"
            bad(prev_seq + 1, "removed", f"entry {gap} is missing (deleted)")
        keyed = hmac.compare_digest(entry_hash(str(row["prev_hash"]), row, chain_key), stored)
        authentic = keyed
        if keyed and keyed_from is None:
            if seq != 1 and row["action"] != REKEY_ACTION:
                bad(1, "changed", f"entries 1 to {seq - 1} carry hashes recomputed without the "
                    "installation key (the documented formula, by someone who can write the "
                    f"database): the log was re-chained; entry {seq} is the first keyed one, and "
                    "no chain_keyed entry says an older FinFlow wrote those before it")
            keyed_from = seq
        elif not keyed:
            unkeyed = entry_hash(str(row["prev_hash"]), row) == stored
            if keyed_from is not None or not unkeyed:
                how = ("its hash was recomputed without the installation key (the documented "
                       "formula, by someone who can write the database)") if unkeyed else \
                    "its content no longer matches its keyed hash"
                bad(seq, "changed", f"entry {seq} was changed after it was written: {how}")
            else:
                legacy += 1
                authentic = True
        if row["prev_hash"] != prev_hash and seq == prev_seq + 1:
            culprit = prev_seq or seq
            bad(culprit, "changed", f"entry {seq} does not link to entry {prev_seq}: entry "
                f"{culprit} was rewritten (or the link of entry {seq} altered)")
        if authentic and visit is not None:
            if keyed_from is None:  # unkeyed: trusted only once a chain_keyed entry vouches
                waiting.append(row)
            else:
                for earlier in waiting:
                    visit(earlier)
                waiting.clear()
                visit(row)
        prev_seq, prev_hash = seq, stored
    if head is not None and prev_seq < head[0]:
        bad(prev_seq + 1, "truncated", f"entries {prev_seq + 1} to {head[0]} are missing: the "
            "newest part of the log was deleted")
    elif head is not None and prev_hash != head[1]:
        bad(prev_seq, "changed", f"entry {prev_seq} was rewritten: its hash differs from the one "
            "recorded when it was appended")
    if count and keyed_from is None and claims_keyed:
        bad(1, "changed", "the chain's head says it is keyed with this installation's key, but "
            "no entry is: every entry was recomputed without the key (the log was re-chained)")
    elif count and keyed_from is None:
        bad(1, "unkeyed", f"none of the {count} entries is keyed: they were written by an older "
            "FinFlow (the next write keys the chain) or rewritten without the key, so they "
            "prove nothing against someone who can write the database")
    if first is not None:
        return AuditVerification(False, count, first.first_bad_seq, first.problem, first.message,
                                 head_seq, keyed_from, legacy, key.fingerprint, hashes)
    legacy_note = (f" ({legacy} written before the chain was keyed at entry {keyed_from}: "
                   "checked with the old unkeyed hash)") if legacy else ""
    return AuditVerification(True, count, None, None,
                             f"audit chain intact: {count} entries verified{legacy_note}",
                             head_seq, keyed_from, legacy, key.fingerprint, hashes)
