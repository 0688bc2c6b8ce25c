"""Adopting rows written before FinFlow sealed them: one audited, explicit step, never implied.

A database upgraded to 0005 keeps its old rows with no seal, and FinFlow neither scores with
an unsealed model or strategy nor lets verify pass them. An admin who has checked the
installation (or restored it from a trusted backup) adopts them: every unsealed row is
sealed as it is now, and one ``legacy_rows_sealed`` entry records how many rows of each table,
the seal of each user, strategy, model version and officer's decision, and each batch's
seal sums. It is trust on first use, written down: what was changed before adoption cannot
be told any more, and the trail says from when on it can.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Table, bindparam, select, update

from finflow_core.store.audit_chain import append_audit, lock_chain
from finflow_core.store.engine import Store
from finflow_core.store.lending_tables import (
    applications,
    decisions,
    model_versions,
    scores,
    strategies,
)
from finflow_core.store.seals import SPECS, SealSum, key_of, seal_ref, seal_rows
from finflow_core.store.tables import audit_log, users

PAGE = 20_000
ACTION = "legacy_rows_sealed"


@dataclass(frozen=True)
class Adoption:
    """What was adopted, per table, and the entry that records it (None: nothing to adopt)."""

    counts: dict[str, int] = field(default_factory=dict)
    seq: int | None = None


def adopt_legacy(store: Store, actor: str) -> Adoption:
    """Seal every unsealed row as it is now and record it (in one transaction)."""
    with store.begin() as conn:
        lock_chain(conn)
        counts: Counter[str] = Counter()
        refs: list[dict[str, Any]] = []
        for table, pk in ((users, "id"), (strategies, "id"), (model_versions, "version")):
            refs += _small(conn, table, pk, counts)
        kept = _decisions_in_trail(conn)
        for row in conn.execute(select(decisions).where(decisions.c.kind == "manual")
                                .where(decisions.c.seal.is_(None))).mappings():
            if row["id"] in kept:
                continue
            # decisions refuse UPDATE: the trail keeps their seal instead
            refs.append(seal_ref("decisions", row["id"], _seal(conn, "decisions", [dict(row)])[0])
                        ["row_seal"])
            counts["decisions"] += 1
        sums = _batches(conn, counts)
        counts = +counts  # drop tables with nothing adopted
        if not counts:
            return Adoption()
        entry = append_audit(conn, actor, ACTION, "audit", "rows", {
            "tables": dict(counts), "batches": sums, "row_seals": refs,
            "note": "rows written before FinFlow sealed them, sealed as they were at this moment "
                    "(trust on first use): changes made to them before now cannot be told",
        })
    return Adoption(dict(counts), entry.seq)


def _decisions_in_trail(conn: Connection) -> set[int]:
    """Officers' decisions whose seal an entry already keeps (their case_decided entry, or an
    earlier adoption)."""
    rows = conn.execute(select(audit_log.c.details)
                        .where(audit_log.c.action.in_(("case_decided", ACTION))))
    kept = set()
    for (text,) in rows:
        details = json.loads(text)
        for ref in [details.get("row_seal") or {}, *(details.get("row_seals") or [])]:
            if isinstance(ref, dict) and ref.get("table") == "decisions":
                kept.add(int(ref["row"]))
    return kept


def _seal(conn: Connection, table: str, rows: list[dict[str, Any]]) -> list[str]:
    columns = {c: [r[c] for r in rows] for c in SPECS[table].columns}
    return seal_rows(key_of(conn), table, columns, len(rows))


def _small(conn: Connection, table: Table, pk: str, counts: Counter[str]) -> list[dict[str, Any]]:
    rows = [dict(r) for r in conn.execute(select(table).where(table.c.seal.is_(None))).mappings()]
    refs = []
    for row, seal in zip(rows, _seal(conn, table.name, rows), strict=True):
        conn.execute(update(table).where(table.c[pk] == row[pk]).values(seal=seal))
        refs.append(seal_ref(table.name, row[pk], seal)["row_seal"])
    counts[table.name] += len(rows)
    return refs


def _batches(conn: Connection, counts: Counter[str]) -> dict[str, dict[str, Any]]:
    """Seal unsealed applications and scores, batch by batch; their new seal sums."""
    a, s = applications.c, scores.c
    ids = list(conn.execute(select(a.batch_id).where(a.seal.is_(None)).distinct()).scalars())
    sums: dict[str, dict[str, Any]] = {}
    for bid in sorted(ids):
        totals = {"applications": SealSum(), "scores": SealSum()}
        for table, key, batch_of in ((applications, a.id, a.batch_id), (scores, s.application_id,
                                     select(a.batch_id).where(a.id == s.application_id)
                                     .scalar_subquery())):
            last = -1
            while True:
                page = [dict(r) for r in conn.execute(
                    select(table).where(batch_of == bid, key > last).order_by(key).limit(PAGE))
                    .mappings()]
                if not page:
                    break
                last = page[-1][key.name]
                fresh = _seal(conn, table.name, page)
                todo = [{"k": r[key.name], "new_seal": new}
                        for r, new in zip(page, fresh, strict=True) if r["seal"] is None]
                if todo:
                    conn.execute(update(table).where(key == bindparam("k"))
                                 .values(seal=bindparam("new_seal")), todo)
                counts[table.name] += len(todo)
                totals[table.name].add([r["seal"] or new for r, new in zip(page, fresh, strict=True)])
        sums[bid] = {t: v.value() for t, v in totals.items()}
    return sums
