"""What an attacker with write access to the database file (and the documented formulas,
but not the installation key) does, as helpers for the attack tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select, text, update

from finflow_core.store import Store
from finflow_core.store.chain_hash import entry_hash
from finflow_core.store.tables import GENESIS_HASH, audit_head, audit_log


def raw_sql(store: Store, *statements: str, **params: Any) -> None:
    """Run statements as someone with direct database access (one transaction)."""
    with store.begin() as conn:
        for s in statements:
            conn.execute(text(s), params)


def drop_guards(store: Store) -> None:
    """The append-only triggers go first."""
    if store.dialect == "sqlite":
        raw_sql(store, "DROP TRIGGER IF EXISTS audit_log_no_update",
                "DROP TRIGGER IF EXISTS audit_log_no_delete",
                "DROP TRIGGER IF EXISTS decisions_no_update",
                "DROP TRIGGER IF EXISTS decisions_no_delete")
    else:
        raw_sql(store, "DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log",
                "DROP TRIGGER IF EXISTS decisions_append_only ON decisions")


def rechain(conn: Connection, edits: dict[int, dict[str, Any]] | None = None) -> None:
    """Apply ``edits`` (seq -> new field values) and recompute every hash and prev_hash with the
    documented formula (plain SHA-256: the key is not at hand), then move the head to match."""
    prev, seq = GENESIS_HASH, 0
    for row in conn.execute(select(audit_log).order_by(audit_log.c.seq)).mappings().all():
        forged = {**row, **(edits or {}).get(int(row["seq"]), {})}
        forged["prev_hash"] = prev
        forged["hash"] = entry_hash(prev, forged)
        conn.execute(update(audit_log).where(audit_log.c.seq == row["seq"]).values(**forged))
        prev, seq = forged["hash"], int(row["seq"])
    conn.execute(update(audit_head).values(seq=seq, hash=prev))


def rewrite_as_unkeyed(conn: Connection, drop: set[int] = frozenset()) -> None:  # type: ignore[assignment]
    """Delete the entries ``drop``, renumber and re-chain the rest with the documented unkeyed
    formula, and clear the head's key fingerprint: the log now looks like one an older FinFlow
    wrote, hoping the next write continues it keyed (``chain_keyed``)."""
    rows = conn.execute(select(audit_log).order_by(audit_log.c.seq)).mappings().all()
    conn.execute(text("DELETE FROM audit_log"))
    prev, seq = GENESIS_HASH, 0
    for row in rows:
        if int(row["seq"]) in drop:
            continue
        seq += 1
        forged = {**row, "seq": seq, "prev_hash": prev}
        forged["hash"] = entry_hash(prev, forged)
        conn.execute(audit_log.insert().values(**forged))
        prev = forged["hash"]
    conn.execute(update(audit_head).values(seq=seq, hash=prev, key_fingerprint=None))


def cut_tail(store: Store, keep: int) -> None:
    """Delete every entry after ``keep`` and move the head back to it: a valid, shorter chain."""
    with store.begin() as conn:
        last = conn.execute(select(audit_log.c.hash).where(audit_log.c.seq == keep)).scalar_one()
        conn.execute(text("DELETE FROM audit_log WHERE seq > :k"), {"k": keep})
        conn.execute(update(audit_head).values(seq=keep, hash=last))


def one(store: Store, sql: str, **params: Any) -> Any:
    with store.connect() as conn:
        return conn.execute(text(sql), params).one()
